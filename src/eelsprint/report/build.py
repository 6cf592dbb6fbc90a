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
from eelsprint.exceptions import ConfigError, InputDataError
from eelsprint.report.html import Section, render
from eelsprint.report.sections import ReportData, compute_sections

if TYPE_CHECKING:
    from eelsprint.classify import FingerprintClassifier


#: Fewest spectra a report is made for (PCA, t-SNE and silhouettes need several).
MIN_PIXELS = 10


@dataclass(frozen=True)
class ReportConfig:
    """Settings of an evaluation report.

    Attributes
    ----------
    threshold : float
        Total predictive entropy (nats) above which a pixel counts as uncertain.
    n_draws : int
        Posterior draws per pixel (stored in ``posterior.nc``).
    hdi_prob : float
        Probability mass of the highest-density intervals of class fractions.
    calibration_fraction : float
        Share of the labelled pixels used to fit temperature scaling; the rest are held out.
    n_bins : int
        Equal-mass bins of the ECE and the reliability diagram.
    n_bootstrap : int
        Bootstrap resamples of the reliability diagram's bands.
    tsne_points : int
        Pixels (a random subset) shown in the t-SNE figure.
    silhouette_points : int
        Frames larger than this are scored on a random subset.
    baselines : bool
        Run the baselines of :mod:`eelsprint.report.baselines` too.
    seed : int
        Seed of every random choice of the report.
    """

    threshold: float = 0.5
    n_draws: int = 100
    hdi_prob: float = 0.94
    calibration_fraction: float = 0.3
    n_bins: int = 10
    n_bootstrap: int = 200
    tsne_points: int = 1000
    silhouette_points: int = 2000
    baselines: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.threshold > 0:
            raise ConfigError(f"threshold must be > 0 nats, got {self.threshold}")
        if not 0 < self.hdi_prob < 1 or not 0 < self.calibration_fraction < 1:
            raise ConfigError("hdi_prob and calibration_fraction must lie strictly between 0 and 1")
        if (
            min(self.n_draws, self.n_bins, self.n_bootstrap) < 2
            or min(self.tsne_points, self.silhouette_points) < 10
        ):
            raise ConfigError("n_draws, n_bins and n_bootstrap must be >= 2; tsne/silhouette points >= 10")


@dataclass(frozen=True)
class Frame:
    """One frame (a scan at one temperature or time) of the pixels being evaluated.

    Attributes
    ----------
    name : str
        Label in tables and figures.
    start : int
        Index of its first pixel in the report's flat pixel order.
    shape : tuple of int
        Its scan shape (navigation shape without the frames axis).
    """

    name: str
    start: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of pixels."""
        return math.prod(self.shape)

    @property
    def stop(self) -> int:
        """One past its last pixel."""
        return self.start + self.size

    def map(self, values: np.ndarray) -> np.ndarray:
        """This frame's part of flat per-pixel ``values`` as a 2-D image (1-D scans become one row)."""
        part = values[self.start : self.stop]
        if len(self.shape) == 2:
            return part.reshape(self.shape)
        return part.reshape(-1, self.shape[-1] if self.shape else 1)


def frames_of(
    spectra: Sequence[Spectra], names: Sequence[str], frames_axis: int | None = None
) -> list[Frame]:
    """Split inputs into frames: along ``frames_axis`` of each input's navigation, or one frame per input.

    ``frames_axis=None`` takes axis 0 of inputs with 3 or more navigation axes
    (a series of frames) and keeps lower-dimensional inputs whole.

    Raises
    ------
    InputDataError
        If ``frames_axis`` does not exist in an input's navigation shape.
    """
    frames, start = [], 0
    for s, name in zip(spectra, names, strict=True):
        nav = s.nav_shape
        axis = _frames_axis(nav, frames_axis, s.source)
        if axis is None:
            frames.append(Frame(name, start, nav))
            start += math.prod(nav)
            continue
        inner = nav[:axis] + nav[axis + 1 :]
        for i in range(nav[axis]):
            frames.append(Frame(f"{name}[{i}]" if len(spectra) > 1 else f"frame {i}", start, inner))
            start += math.prod(inner)
    return frames


def _frames_axis(nav: tuple[int, ...], frames_axis: int | None, source: str) -> int | None:
    if frames_axis is None:
        return 0 if len(nav) >= 3 else None
    if not -len(nav) <= frames_axis < len(nav):
        raise InputDataError(
            f"{source}: frames axis {frames_axis} does not exist in navigation shape {nav}; "
            f"pass --frames-axis between {-len(nav)} and {len(nav) - 1}"
        )
    return frames_axis % len(nav)


def model_pixels(
    clf: FingerprintClassifier, spectra: Sequence[Spectra], frames_axis: int | None = None
) -> np.ndarray:
    """Every pixel of every input on the model's energy axis, frames first: (n_pixels, n_channels).

    The model's stored preprocessing is applied as at fit time
    (:meth:`FingerprintClassifier.model_input`).
    """
    flat = []
    for s in spectra:
        x, nav, source = clf.model_input(s)
        axis = _frames_axis(nav, frames_axis, source)
        data = x if axis is None else np.moveaxis(x.reshape(*nav, -1), axis, 0).reshape(x.shape)
        flat.append(data)
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
            axis = _frames_axis(labels.shape, frames_axis, "truth")
            labels = labels if axis is None else np.moveaxis(labels, axis, 0)
        labels = labels.reshape(-1).astype(np.int64)
        if len(labels) != len(x):
            raise InputDataError(f"truth has {len(labels)} labels but the data have {len(x)} pixels")
    bar = tqdm(total=7, desc="report", disable=not progress, leave=False)
    data = ReportData(clf, x, frames, labels, config, bar)
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
) -> dict[str, Any]:
    """Read inputs and model, build the report and write it (what ``eelsprint report`` runs).

    Returns
    -------
    dict
        The metrics written to ``metrics.json``.
    """
    from eelsprint.classify import FingerprintClassifier
    from eelsprint.data.io import read_spectra

    clf = FingerprintClassifier.load(model, progress=progress)
    spectra = [read_spectra(path) for path in data]
    n_pixels = sum(math.prod(s.nav_shape) for s in spectra)
    labels = read_truth(truth, clf.classes_, n_pixels) if truth is not None else None
    names = [Path(path).stem for path in data]
    report = build_report(
        clf, spectra, names, labels, frames_axis=frames_axis, config=config, progress=progress
    )
    write_report(report, out)
    return report.metrics
