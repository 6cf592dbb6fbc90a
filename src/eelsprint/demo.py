"""The end-to-end demonstration: simulate a heating series, fit, classify, score, draw."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from eelsprint.classify import FingerprintClassifier
from eelsprint.config import Config
from eelsprint.data.atomic import atomic_write, write_json
from eelsprint.data.io import write_dataset
from eelsprint.data.simulate import SimulatedSeries, simulate_series
from eelsprint.inference.metrics import (
    accuracy,
    brier_score,
    error_auroc,
    expected_calibration_error,
    negative_log_likelihood,
    ood_auroc,
)
from eelsprint.maps import plot_maps
from eelsprint.report.baselines import nearest_fingerprint

__all__ = ["format_summary", "run_demo", "score"]


def score(ds: Any, labels: np.ndarray) -> dict[str, float]:
    """Accuracy, calibration and uncertainty-quality metrics of a result against the truth."""
    proba = ds["proba"].values.reshape(-1, ds.sizes["class"])
    y = labels.reshape(-1)
    total = ds["entropy"].values.reshape(-1)
    return {
        "accuracy": accuracy(proba, y),
        "ece": expected_calibration_error(proba, y),
        "nll": negative_log_likelihood(proba, y),
        "brier": brier_score(proba, y),
        "ood_auroc_epistemic": ood_auroc(ds["epistemic"].values.reshape(-1), y),
        "ood_auroc_score": ood_auroc(ds["ood_score"].values.reshape(-1), y),
        "error_auroc_entropy": error_auroc(total, proba, y),
    }


def summarise(clf: FingerprintClassifier, series: SimulatedSeries, ds: Any) -> dict[str, Any]:
    """The demo's summary (``summary.json``) of a fitted classifier's result ``ds`` on ``series``."""
    n_frames = series.labels.shape[0]
    labels = series.labels.reshape(-1)
    keep = labels >= 0
    baseline = nearest_fingerprint(series.spectra.flat(), series.library)
    summary = {
        "pixels": int(labels.size),
        "frames": n_frames,
        "out_of_library_pixels": int((~keep).sum()),
        "eelsprint": score(ds, series.labels),
        "nearest_fingerprint": {"accuracy": float((baseline[keep] == labels[keep]).mean())},
        "latent": {k: clf.diagnostics_[k] for k in ("kl_total", "active_dims")},
        "library_check": clf.diagnostics_.get("library_check"),
        "class_fractions_per_frame": {
            str(c): [round(float(v), 3) for v in (ds["label"].values == i).reshape(n_frames, -1).mean(-1)]
            for i, c in enumerate(clf.classes_)
        },
    }
    return summary


def run_demo(
    out: str | Path,
    *,
    n_frames: int = 6,
    shape: tuple[int, int] = (19, 30),
    config: Config | None = None,
    seed: int = 0,
    progress: bool = True,
) -> dict[str, Any]:
    """Simulate a series, fit eelsprint, classify it and write model, maps, figure and summary.

    Writes into ``out``: ``model/`` (the fitted model), ``series.npz`` (the
    simulated spectra, ``x`` and ``energy``), ``truth.npz`` (``label`` per pixel,
    -1 = no library class), ``library.npz``, ``series.nc`` (the result),
    ``maps.png`` and ``summary.json``.

    Returns
    -------
    dict
        The summary: metrics of eelsprint and of the nearest-fingerprint baseline.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    series = simulate_series(n_frames, shape, seed=seed)
    config = config or Config()
    clf = FingerprintClassifier(config=config, progress=progress).fit(series.spectra, series.library)
    clf.save(out / "model")
    ds = clf.classify(series.spectra)
    write_dataset(ds, out / "series.nc")
    plot_maps(ds, out / "maps.png", truth=series.labels)

    outputs: dict[str, dict[str, Any]] = {
        "series.npz": {"x": series.spectra.data, "energy": series.spectra.energy},
        "truth.npz": {"label": series.labels, "mixed": series.mixed, "temperature": series.temperatures},
        "library.npz": {
            "spectra": series.library.spectra,
            "energy": series.library.energy,
            "labels": series.library.labels,
        },
    }
    for name, arrays in outputs.items():
        with atomic_write(out / name) as tmp, open(tmp, "wb") as fh:
            np.savez_compressed(fh, **arrays)

    summary = summarise(clf, series, ds)
    write_json(out / "summary.json", summary)
    return summary


def format_summary(summary: dict[str, Any]) -> str:
    """The summary as a few readable lines."""
    m = summary["eelsprint"]
    lines = [
        f"pixels: {summary['pixels']} in {summary['frames']} frames "
        f"({summary['out_of_library_pixels']} in no library class)",
        f"accuracy (in-library): eelsprint {m['accuracy']:.3f} vs nearest fingerprint "
        f"{summary['nearest_fingerprint']['accuracy']:.3f}",
        f"expected calibration error: {m['ece']:.3f}   NLL: {m['nll']:.3f} nats   Brier: {m['brier']:.3f}",
        f"OOD detection AUROC: ood_score {m['ood_auroc_score']:.3f}, "
        f"epistemic {m['ood_auroc_epistemic']:.3f}   "
        f"error detection AUROC (entropy): {m['error_auroc_entropy']:.3f}",
        f"self-consistency: {summary['library_check']['self_consistency']:.3f} of library spectra at the "
        f"data's noise get their own class (nearest fingerprint "
        f"{summary['library_check']['nearest_self_consistency']:.3f})",
        f"latent: KL {summary['latent']['kl_total']:.1f} nats, "
        f"{summary['latent']['active_dims']} active dims",
    ]
    return "\n".join(lines)
