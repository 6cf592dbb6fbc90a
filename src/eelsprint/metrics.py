"""Scores of probabilistic classifications: accuracy, calibration, proper scores, OOD detection."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


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


def negative_log_likelihood(proba: np.ndarray, labels: np.ndarray) -> float:
    """Mean -log p(true class) in nats (labels >= 0 only)."""
    keep = labels >= 0
    return float(-np.log(np.clip(proba[keep][np.arange(keep.sum()), labels[keep]], 1e-12, None)).mean())


def brier_score(proba: np.ndarray, labels: np.ndarray) -> float:
    """Mean squared distance between the probabilities and the one-hot truth (labels >= 0 only)."""
    keep = labels >= 0
    onehot = np.eye(proba.shape[-1])[labels[keep]]
    return float(((proba[keep] - onehot) ** 2).sum(-1).mean())


def ood_auroc(score: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of ``score`` for telling out-of-library spectra (label -1) from in-library ones."""
    return float(roc_auc_score(labels < 0, score))


def error_auroc(score: np.ndarray, proba: np.ndarray, labels: np.ndarray) -> float:
    """AUROC of ``score`` for telling misclassified from correct spectra (labels >= 0 only)."""
    keep = labels >= 0
    wrong = proba[keep].argmax(-1) != labels[keep]
    return float(roc_auc_score(wrong, score[keep]))
