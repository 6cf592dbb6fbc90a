"""The parts of an evaluation report that need ground truth.

Accuracy and confusion, calibration (reliability diagrams with bootstrap bands,
before and after temperature scaling, and against the same classifier with the
encoder's variance ignored) and uncertainty quality (selective prediction,
AUROCs of each uncertainty term for errors and for out-of-library pixels), for
eelsprint, its ablations and every baseline.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from eelsprint.inference.metrics import (
    accuracy,
    brier_score,
    expected_calibration_error,
    negative_log_likelihood,
    reliability_curve,
    selective_curve,
)
from eelsprint.inference.recalibrate import TemperatureScaler, latent_moments, scaled_proba
from eelsprint.report import figures
from eelsprint.report.html import Image, Section, Table
from eelsprint.report.scoring import calibration_split, entropy, per_frame_accuracy, truth_scores

if TYPE_CHECKING:
    from eelsprint.report.inputs import ReportData

__all__ = ["ABLATIONS", "truth_sections"]

#: Ablations of eelsprint scored in the report: name -> description.
ABLATIONS = {
    "latent_mean_only": "GP predictive at the raw encoder's latent mean (encoder variance ignored)",
    "plugin_softmax": "softmax of the GP's mean at the latent mean (no encoder or GP variance)",
}


def _calibration_scores(proba: np.ndarray, labels: np.ndarray, n_bins: int) -> dict[str, float]:
    return {
        "accuracy": accuracy(proba, labels),
        "nll": negative_log_likelihood(proba, labels),
        "brier": brier_score(proba, labels),
        "ece": expected_calibration_error(proba, labels, n_bins=n_bins, equal_mass=True),
    }


def truth_sections(
    d: ReportData,
    proba: np.ndarray,
    terms: dict[str, np.ndarray],
    baselines: dict[str, np.ndarray],
    metrics: dict[str, Any],
) -> list[Section]:
    """Score everything against ``d.labels``, add it to ``metrics`` and return the sections showing it."""
    assert d.labels is not None
    y, cfg = d.labels, d.config
    metrics.update(
        truth_scores(proba, y, terms, error_term="entropy", ood_term="epistemic", n_bins=cfg.n_bins)
    )
    metrics["accuracy_per_frame"] = per_frame_accuracy(proba, y, d.starts)
    for name, p in baselines.items():
        metrics["baselines"][name].update(truth_scores(p, y, n_bins=cfg.n_bins))

    mean0, var0 = latent_moments(d.clf, d.x, encoder_variance=False)
    variants = {
        "latent_mean_only": scaled_proba(mean0, var0),
        "plugin_softmax": scaled_proba(mean0, 0 * var0),
    }
    metrics["ablations"] = {
        name: {"description": ABLATIONS[name], **truth_scores(p, y, n_bins=cfg.n_bins)}
        for name, p in variants.items()
    }

    mean, var = latent_moments(d.clf, d.x)
    fit, held = calibration_split(y, cfg.calibration_fraction, cfg.seed)
    scaler = TemperatureScaler().fit(mean[fit], var[fit], y[fit])
    before, after = scaled_proba(mean[held], var[held]), scaler.predict_proba(mean[held], var[held])
    t = scaler.temperature_
    metrics["recalibration"] = {
        "method": "temperature scaling of the class functions, fitted by NLL",
        "temperature": t,
        "n_fit": len(fit),
        "n_held_out": len(held),
        "before": _calibration_scores(before, y[held], cfg.n_bins),
        "after": _calibration_scores(after, y[held], cfg.n_bins),
    }
    return [
        _accuracy_section(d, metrics),
        _calibration_section(d, proba, variants, before, after, t, metrics),
        _quality_section(d, proba, terms, variants, baselines, metrics),
    ]


def _accuracy_section(d: ReportData, metrics: dict[str, Any]) -> Section:
    matrix = np.asarray(metrics["confusion_matrix"])
    return Section(
        "Accuracy",
        [
            Table(
                ["frame", "accuracy"],
                [[f.name, metrics["accuracy_per_frame"][i]] for i, f in enumerate(d.frames)],
                f"all frames: accuracy {metrics['accuracy']:.3f}, macro-F1 {metrics['macro_f1']:.3f}",
            ),
            Image(
                figures.confusion(matrix, d.classes),
                "Confusion matrix (counts; colour: share of the row). Last row: pixels in no library class.",
            ),
        ],
    )


def _calibration_section(
    d: ReportData,
    proba: np.ndarray,
    variants: dict[str, np.ndarray],
    before: np.ndarray,
    after: np.ndarray,
    temperature: float,
    metrics: dict[str, Any],
) -> Section:
    cfg, y = d.config, d.labels
    assert y is not None
    held = y[calibration_split(y, cfg.calibration_fraction, cfg.seed)[1]]
    sets = {
        "eelsprint": (proba, y),
        "encoder variance ignored": (variants["latent_mean_only"], y),
        "held out, T = 1": (before, held),
        f"held out, T = {temperature:.2f}": (after, held),
    }
    curves = {
        name: reliability_curve(p, lab, cfg.n_bins, cfg.n_bootstrap, seed=cfg.seed)
        for name, (p, lab) in sets.items()
    }
    eces = {
        name: expected_calibration_error(p, lab, cfg.n_bins, equal_mass=True)
        for name, (p, lab) in sets.items()
    }
    rec = metrics["recalibration"]
    rows = [[k, rec["before"][k], rec["after"][k]] for k in ("nll", "ece", "brier", "accuracy")]
    return Section(
        "Calibration",
        [
            Image(
                figures.reliability(curves, eces),
                f"Reliability diagrams, {cfg.n_bins} equal-mass confidence bins; band: 90% bootstrap "
                f"interval ({cfg.n_bootstrap} resamples). Temperature scaling was fitted on {rec['n_fit']} "
                f"labelled pixels and is shown on the {rec['n_held_out']} held out.",
            ),
            Table(
                ["held-out pixels", "before (T = 1)", f"after (T = {temperature:.3f})"],
                rows,
                "Temperature scaling of the class functions (f / T), fitted by negative log-likelihood",
            ),
        ],
    )


def _quality_section(
    d: ReportData,
    proba: np.ndarray,
    terms: dict[str, np.ndarray],
    variants: dict[str, np.ndarray],
    baselines: dict[str, np.ndarray],
    metrics: dict[str, Any],
) -> Section:
    y = d.labels
    assert y is not None
    curves = {
        "eelsprint, total entropy": selective_curve(terms["entropy"], proba, y),
        "eelsprint, epistemic": selective_curve(terms["epistemic"], proba, y),
        "encoder variance ignored": selective_curve(
            entropy(variants["latent_mean_only"]), variants["latent_mean_only"], y
        ),
    }
    if "pca_gp" in baselines:
        curves["pca_gp baseline"] = selective_curve(entropy(baselines["pca_gp"]), baselines["pca_gp"], y)
    rows = [
        [name, metrics["error_auroc_by_term"][name], metrics["ood_auroc_by_term"][name]] for name in terms
    ]
    return Section(
        "Uncertainty quality",
        [
            Image(
                figures.selective(curves),
                "Selective prediction: accuracy of the pixels kept when the most uncertain are rejected "
                "first; the area is the mean accuracy over all shares kept.",
            ),
            Table(
                ["uncertainty term", "AUROC: errors vs correct", "AUROC: not in library vs in library"],
                rows,
                f"selective-prediction area (total entropy): {metrics['selective_area']:.3f}",
            ),
        ],
    )
