"""Evaluation reports: measure a trained model on data and write what a person reads.

``eelsprint report DATA... --model MODEL --out REPORT_DIR [--truth TRUTH.npz]``
writes ``REPORT_DIR/report.html`` (self-contained, figures embedded as PNG),
``REPORT_DIR/metrics.json`` (the same numbers, for tracking) and
``REPORT_DIR/posterior.nc`` (posterior draws of every pixel's class
probabilities as ArviZ ``InferenceData``, group ``posterior_predictive``).

Without ground truth the report holds what needs none (class maps and
fractions with credible intervals, uncertainty maps, the paper's latent-space
figures, a posterior-predictive check); with it, accuracy, calibration
(before and after temperature scaling) and uncertainty quality, for eelsprint
and for every baseline of :mod:`eelsprint.report.baselines`.

Examples
--------
>>> from eelsprint.report.build import ReportConfig, build_report  # doctest: +SKIP
>>> report = build_report(clf, [series.spectra], labels=series.labels)  # doctest: +SKIP
>>> write_report(report, "report-out")  # doctest: +SKIP
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np
from tqdm.auto import tqdm

from eelsprint.data.atomic import atomic_write, write_json
from eelsprint.data.spectra import Spectra
from eelsprint.exceptions import InputDataError
from eelsprint.report.html import Section, render
from eelsprint.report.inputs import Frame, ReportConfig, ReportData, frames_axis_of, frames_of
from eelsprint.report.sections import compute_sections

if TYPE_CHECKING:
    from eelsprint.classify import FingerprintClassifier

__all__ = [
    "MIN_PIXELS",
    "Frame",
    "Report",
    "ReportConfig",
    "build_report",
    "frames_of",
    "model_pixels",
    "read_truth",
    "run_report",
    "write_report",
]


#: Fewest spectra a report is made for (PCA, t-SNE and silhouettes need several).
MIN_PIXELS = 10


def model_pixels(
    clf: FingerprintClassifier, spectra: Sequence[Spectra], frames_axis: int | None = None
) -> np.ndarray:
    """Every pixel of every input on the model's energy axis, frames first: (n_pixels, n_channels).

    The model's stored preprocessing is applied as at fit time
    (:meth:`FingerprintClassifier.prepare`).
    """
    flat = []
    for s in spectra:
        on_axis = clf.prepare(s)
        axis = frames_axis_of(s.nav_shape, frames_axis, s.source)
        data = on_axis.data if axis is None else np.moveaxis(on_axis.data, axis, 0)
        flat.append(data.reshape(-1, on_axis.n_channels))
    return np.concatenate(flat)


def read_truth(path: str | Path, classes: Sequence[str] | np.ndarray, n_pixels: int) -> np.ndarray:
    """Read ground-truth labels from ``.npz`` (array ``label``), as stored.

    ``label`` holds one class index (into the model's classes) or class name per
    pixel; -1 (or a name not in the model) means "in no library class". Its
    shape is the single input's navigation shape, or anything with one entry
    per pixel of all inputs in order (see :func:`build_report`).

    Raises
    ------
    InputDataError
        Missing or unreadable file, no ``label`` array, wrong size or an index out of range.
    """
    path = Path(path)
    try:
        loaded = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise InputDataError(f"{path}: truth file not found") from None
    except Exception as err:  # numpy's readers fail in many ways
        raise InputDataError(f"{path}: cannot read truth file ({err})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        raise InputDataError(
            f"{path}: not an .npz archive; save the labels with numpy.savez(path, label=...)"
        )
    with loaded:
        if "label" not in loaded.files:
            raise InputDataError(f"{path}: no array 'label' (found: {', '.join(loaded.files) or 'none'})")
        label = loaded["label"]
    if label.dtype.kind in "USO":
        lookup = {str(c): i for i, c in enumerate(classes)}
        label = np.vectorize(lambda v: lookup.get(str(v), -1), otypes=[np.int64])(label)
    if label.dtype.kind not in "iu":
        raise InputDataError(f"{path}: 'label' must hold integers or class names, got dtype {label.dtype}")
    if label.size != n_pixels:
        raise InputDataError(f"{path}: 'label' has {label.size} entries but the data have {n_pixels} pixels")
    label = label.astype(np.int64)
    if label.max() >= len(classes) or label.min() < -1:
        raise InputDataError(
            f"{path}: 'label' must be -1 or a class index 0..{len(classes) - 1}, "
            f"got values {label.min()}..{label.max()}"
        )
    return label


@dataclass
class Report:
    """An evaluation's numbers, its page and its posterior draws."""

    metrics: dict[str, Any]
    sections: list[Section]
    posterior: az.InferenceData
    title: str = "eelsprint evaluation report"


def build_report(
    clf: FingerprintClassifier,
    spectra: Sequence[Spectra],
    names: Sequence[str] | None = None,
    labels: np.ndarray | None = None,
    *,
    frames_axis: int | None = None,
    config: ReportConfig | None = None,
    progress: bool = False,
    loop: list[dict[str, Any]] | None = None,
) -> Report:
    """Evaluate a fitted classifier on spectra; with ``labels``, against ground truth too.

    Parameters
    ----------
    clf : FingerprintClassifier
        Fitted.
    spectra : sequence of Spectra
        The inputs; every pixel is classified.
    names : sequence of str, optional
        One name per input (default: the file stem of its ``source``).
    labels : ndarray of int, optional
        Ground truth in the report's pixel order (see :func:`read_truth`); -1 for
        pixels in no library class. Arrays shaped like a single input's
        navigation are accepted as they are.
    frames_axis : int, optional
        See :func:`frames_of`.
    config : ReportConfig, optional
    progress : bool
        Show a progress bar over the report's stages.
    loop : list of dict, optional
        Rounds of an active-learning loop record (:class:`eelsprint.active.loop.LoopRecord`).

    Returns
    -------
    Report

    Raises
    ------
    InputDataError
        Fewer than :data:`MIN_PIXELS` spectra, or labels that do not match the pixels.
    """
    config = config or ReportConfig()
    names = list(names) if names is not None else [Path(s.source).stem or s.source for s in spectra]
    frames = frames_of(spectra, names, frames_axis)
    x = model_pixels(clf, spectra, frames_axis)
    if len(x) < MIN_PIXELS:
        sources = ", ".join(s.source for s in spectra)
        raise InputDataError(f"{sources}: a report needs at least {MIN_PIXELS} spectra, got {len(x)}")
    if labels is not None:
        labels = np.asarray(labels)
        if len(spectra) == 1 and labels.shape == spectra[0].nav_shape:
            axis = frames_axis_of(labels.shape, frames_axis, "truth")
            labels = labels if axis is None else np.moveaxis(labels, axis, 0)
        labels = labels.reshape(-1).astype(np.int64)
        if len(labels) != len(x):
            raise InputDataError(f"truth has {len(labels)} labels but the data have {len(x)} pixels")
    bar = tqdm(total=7, desc="report", disable=not progress, leave=False)
    data = ReportData(clf, x, frames, labels, config, bar, loop)
    metrics, sections, posterior = compute_sections(data)
    bar.close()
    return Report(metrics, sections, posterior)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (np.floating, float)):
        return None if not np.isfinite(value) else float(value)
    if isinstance(value, np.integer):
        return int(value)
    return value


def write_report(report: Report, out: str | Path) -> dict[str, Path]:
    """Write ``report.html``, ``metrics.json`` and ``posterior.nc`` into ``out``, each atomically.

    Returns
    -------
    dict
        File kind -> path written.
    """
    out = Path(out)
    paths = {"html": out / "report.html", "metrics": out / "metrics.json", "posterior": out / "posterior.nc"}
    m = report.metrics
    intro = (
        f"{m['n_pixels']} pixels in {len(m['frames'])} frames, model classes {', '.join(m['classes'])}. "
        f"Ground truth: {'yes' if m['has_truth'] else 'no'}."
    )
    with atomic_write(paths["html"]) as tmp:
        tmp.write_text(render(report.title, intro, report.sections), encoding="utf-8")
    write_json(paths["metrics"], _jsonable(report.metrics), allow_nan=False)
    with atomic_write(paths["posterior"]) as tmp:
        report.posterior.to_netcdf(str(tmp), engine="h5netcdf")
    return paths


def run_report(
    data: Sequence[str | Path],
    model: str | Path,
    out: str | Path,
    truth: str | Path | None = None,
    *,
    frames_axis: int | None = None,
    config: ReportConfig | None = None,
    progress: bool = True,
    nav_shape: tuple[int, ...] | None = None,
    loop: str | Path | None = None,
) -> dict[str, Any]:
    """Read inputs and model, build the report and write it (what ``eelsprint report`` runs).

    ``nav_shape`` is every input's scan grid (see :func:`eelsprint.data.io.read_spectra`):
    ``(24, 30, 19)`` turns a flat file into 24 frames of 30 x 19, each mapped on its own.
    ``loop`` is an active-learning loop record (JSON) for the report's active-learning section.

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.
    """
    from eelsprint.active.loop import LoopRecord
    from eelsprint.classify import FingerprintClassifier
    from eelsprint.data.io import read_spectra

    clf = FingerprintClassifier.load(model, progress=progress)
    spectra = [read_spectra(path, nav_shape) for path in data]
    n_pixels = sum(math.prod(s.nav_shape) for s in spectra)
    labels = read_truth(truth, clf.classes_, n_pixels) if truth is not None else None
    rounds = LoopRecord.open(loop).rounds if loop is not None else None
    names = [Path(path).stem for path in data]
    report = build_report(
        clf, spectra, names, labels, frames_axis=frames_axis, config=config, progress=progress, loop=rounds
    )
    write_report(report, out)
    return report.metrics
