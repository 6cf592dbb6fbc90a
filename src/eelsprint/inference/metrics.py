"""Scores of probabilistic classifications: accuracy, calibration, proper scores, OOD detection."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.metrics import confusion_matrix, f1_score, roc_auc_score

__all__ = [
    "ReliabilityCurve",
    "accuracy",
    "brier_score",
    "confusion",
    "draw_labels",
    "ece_floor",
    "error_auroc",
    "expected_calibration_error",
    "macro_f1",
    "negative_log_likelihood",
    "ood_auroc",
    "reliability_curve",
    "selective_area",
    "selective_curve",
]


def accuracy(proba: np.ndarray, labels: np.ndarray) -> float:
    """Share of spectra whose most probable class is the true one (labels >= 0 only)."""
    keep = labels >= 0
    return float((proba[keep].argmax(-1) == labels[keep]).mean())


def expected_calibration_error(
    proba: np.ndarray, labels: np.ndarray, n_bins: int = 15, equal_mass: bool = False
) -> float:
    """Top-label ECE: the bin-weighted gap between confidence and accuracy.

    Parameters
    ----------
    proba : ndarray of shape (n, n_classes)
    labels : ndarray of int, shape (n,)
        Spectra with a negative label (no library class) are left out.
    n_bins : int
        Bins of confidence.
    equal_mass : bool
        Bins holding equal numbers of spectra instead of equal widths.
    """
    keep = labels >= 0
    conf = proba[keep].max(-1)
    hit = (proba[keep].argmax(-1) == labels[keep]).astype(float)
    if equal_mass:
        edges = np.quantile(conf, np.linspace(0, 1, n_bins + 1))
    else:
        edges = np.linspace(0, 1, n_bins + 1)
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    gap = 0.0
    for b in range(n_bins):
        in_bin = which == b
        if in_bin.any():
            gap += in_bin.mean() * abs(conf[in_bin].mean() - hit[in_bin].mean())
    return float(gap)


def draw_labels(proba: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One class drawn per row from ``proba`` (..., n_classes; rows need not sum exactly to 1)."""
    cdf = np.cumsum(proba, -1)
    u = rng.random(proba.shape[:-1])[..., None] * cdf[..., -1:]
    return np.minimum((cdf < u).sum(-1), proba.shape[-1] - 1)


def ece_floor(
    proba: np.ndarray,
    labels: np.ndarray,
    n_draws: int = 200,
    n_bins: int = 15,
    equal_mass: bool = False,
    seed: int = 0,
) -> float:
    """The ECE a perfectly calibrated classifier would score on these spectra: the median over
    ``n_draws`` label sets drawn from ``proba`` itself, scored like :func:`expected_calibration_error`.

    ECE is biased upwards on finite data: with ~1,500 spectra a model whose probabilities are
    exactly right still scores about 0.015. An ECE near this floor shows no miscalibration the data
    can resolve. Only spectra with ``labels >= 0`` are used (as in the ECE itself).
    """
    p = proba[labels >= 0]
    rng = np.random.default_rng(seed)
    draws = [expected_calibration_error(p, draw_labels(p, rng), n_bins, equal_mass) for _ in range(n_draws)]
    return float(np.median(draws))


def negative_log_likelihood(proba: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class) in nats (labels >= 0 only)."""
    keep = labels >= 0
    return float(-np.log(np.clip(proba[keep][np.arange(keep.sum()), labels[keep]], 1e-12, None)).mean())


def brier_score(proba: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared distance between the probabilities and the one-hot truth (labels >= 0 only)."""
    keep = labels >= 0
    onehot = np.eye(proba.shape[-1])[labels[keep]]
    return float(((proba[keep] - onehot) ** 2).sum(-1).mean())


def _auroc(positive: np.ndarray, score: np.ndarray) -> float:
    """ROC AUC, or NaN when only one of the two groups is present (it is undefined then)."""
    if positive.all() or not positive.any():
        return float("nan")
    return float(roc_auc_score(positive, score))


def ood_auroc(score: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of ``score`` for telling out-of-library spectra (label -1) from in-library ones (NaN if none)."""
    return _auroc(labels < 0, score)


def error_auroc(score: np.ndarray, proba: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of ``score`` for telling misclassified from correct spectra (labels >= 0; NaN if no errors)."""
    keep = labels >= 0
    return _auroc(proba[keep].argmax(-1) != labels[keep], score[keep])


def macro_f1(proba: np.ndarray, labels: np.ndarray) -> float:
    """Unweighted mean over library classes of the F1 score (labels >= 0 only; scikit-learn)."""
    keep = labels >= 0
    classes = np.arange(proba.shape[-1])
    return float(
        f1_score(labels[keep], proba[keep].argmax(-1), labels=classes, average="macro", zero_division=0)
    )


def confusion(proba: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Counts of (true, predicted) class, shape (n_classes + 1, n_classes).

    Rows are the true library classes, then one row for spectra in no library
    class (label -1); columns are the predicted classes (scikit-learn's
    ``confusion_matrix``).
    """
    n = proba.shape[-1]
    rows = [*range(n), -1]
    return confusion_matrix(np.where(labels < 0, -1, labels), proba.argmax(-1), labels=rows)[:, :n]


@dataclass(frozen=True)
class ReliabilityCurve:
    """Accuracy against confidence in equal-mass bins, with bootstrap bands.

    Attributes
    ----------
    confidence, accuracy : ndarray of shape (n_bins,)
        Mean top-label confidence and accuracy of each bin.
    count : ndarray of int, shape (n_bins,)
        Spectra per bin (ties in confidence can leave a bin empty; its other entries are NaN).
    low, high : ndarray of shape (n_bins,)
        Bootstrap percentile band of each bin's accuracy.
    """

    confidence: np.ndarray
    accuracy: np.ndarray
    count: np.ndarray
    low: np.ndarray
    high: np.ndarray


def reliability_curve(
    proba: np.ndarray,
    labels: np.ndarray,
    n_bins: int = 10,
    n_bootstrap: int = 200,
    level: float = 0.9,
    seed: int = 0,
) -> ReliabilityCurve:
    """Reliability diagram data: equal-mass confidence bins and bootstrap bands of their accuracy.

    Parameters
    ----------
    proba : ndarray of shape (n, n_classes)
    labels : ndarray of int, shape (n,)
        Spectra with a negative label are left out.
    n_bins : int
        Bins holding (about) equal numbers of spectra.
    n_bootstrap : int
        Resamples of the spectra (with replacement); the bins stay fixed.
    level : float
        Central share of the bootstrap distribution in the band.
    seed : int
        Seed of the resampling.
    """
    keep = labels >= 0
    conf = proba[keep].max(-1)
    hit = (proba[keep].argmax(-1) == labels[keep]).astype(float)
    edges = np.quantile(conf, np.linspace(0, 1, n_bins + 1))
    which = np.clip(np.searchsorted(edges, conf, side="right") - 1, 0, n_bins - 1)
    count = np.bincount(which, minlength=n_bins)
    empty = np.where(count > 0, 1.0, np.nan)  # tied confidences can leave a bin empty
    mean_conf = np.bincount(which, conf, n_bins) / np.maximum(count, 1) * empty
    mean_hit = np.bincount(which, hit, n_bins) / np.maximum(count, 1) * empty
    rng = np.random.default_rng(seed)
    draws = rng.integers(0, len(conf), size=(n_bootstrap, len(conf)))
    flat = (np.arange(n_bootstrap)[:, None] * n_bins + which[draws]).ravel()
    boot_n = np.bincount(flat, minlength=n_bootstrap * n_bins).reshape(n_bootstrap, n_bins)
    boot_hit = np.bincount(flat, hit[draws].ravel(), n_bootstrap * n_bins).reshape(n_bootstrap, n_bins)
    boot = np.where(boot_n > 0, boot_hit / np.maximum(boot_n, 1), np.nan)
    tail = 50 * (1 - level)
    low, high = np.full(n_bins, np.nan), np.full(n_bins, np.nan)
    seen = count > 0
    low[seen], high[seen] = np.nanpercentile(boot[:, seen], [tail, 100 - tail], axis=0)
    return ReliabilityCurve(mean_conf, mean_hit, count, low, high)


def selective_curve(
    score: np.ndarray, proba: np.ndarray, labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Accuracy of the spectra kept when the most uncertain are rejected first.

    Parameters
    ----------
    score : ndarray of shape (n,)
        Uncertainty (higher = less sure), e.g. total predictive entropy.
    proba : ndarray of shape (n, n_classes)
    labels : ndarray of int, shape (n,)
        Spectra with a negative label are left out.

    Returns
    -------
    coverage, accuracy : ndarray of shape (n_kept,)
        Share of spectra kept (1/n ... 1) and the accuracy among them.
    """
    keep = labels >= 0
    order = np.argsort(score[keep], kind="stable")
    hit = (proba[keep].argmax(-1) == labels[keep])[order]
    kept = np.arange(1, len(hit) + 1)
    return kept / len(hit), np.cumsum(hit) / kept


def selective_area(score: np.ndarray, proba: np.ndarray, labels: np.ndarray) -> float:
    """Area under the selective-prediction curve (mean accuracy over all coverages; 1 is best)."""
    return float(selective_curve(score, proba, labels)[1].mean())
