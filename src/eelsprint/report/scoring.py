"""Scores of one set of class probabilities against ground truth, as a JSON-friendly dictionary.

Used by the evaluation report for eelsprint, its ablations and every baseline,
so that all rows of the report's table mean the same thing.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eelsprint.inference.metrics import (
    accuracy,
    brier_score,
    confusion,
    error_auroc,
    expected_calibration_error,
    macro_f1,
    negative_log_likelihood,
    ood_auroc,
    selective_area,
)

__all__ = ["TRUTH_KEYS", "calibration_split", "entropy", "per_frame_accuracy", "truth_scores"]

#: Keys every scored method has in ``metrics.json`` (``None`` where undefined).
TRUTH_KEYS = ("accuracy", "macro_f1", "nll", "brier", "ece", "ood_auroc", "error_auroc")


def entropy(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of probabilities (n, n_classes) -> (n,), like ``uncertainty.entropy``."""
    return -(proba * np.log(np.clip(proba, 1e-12, None))).sum(-1)


def _error_auroc(score: np.ndarray, proba: np.ndarray, labels: np.ndarray) -> float | None:
    keep = labels >= 0
    wrong = proba[keep].argmax(-1) != labels[keep]
    return error_auroc(score, proba, labels) if 0 < wrong.sum() < wrong.size else None


def _ood_auroc(score: np.ndarray, labels: np.ndarray) -> float | None:
    outside = labels < 0
    return ood_auroc(score, labels) if 0 < outside.sum() < outside.size else None


def truth_scores(
    proba: np.ndarray,
    labels: np.ndarray,
    terms: dict[str, np.ndarray] | None = None,
    *,
    error_term: str = "entropy",
    ood_term: str = "entropy",
    n_bins: int = 10,
) -> dict[str, Any]:
    """Accuracy, calibration, proper scores and uncertainty quality of ``proba``.

    Parameters
    ----------
    proba : ndarray of shape (n, n_classes)
    labels : ndarray of int, shape (n,)
        True class index; -1 for spectra in no library class (left out of every
        score but ``ood_auroc`` and the confusion matrix's last row).
    terms : dict of str to ndarray of shape (n,), optional
        Uncertainty terms (higher = less sure) whose AUROCs are reported;
        ``{"entropy": entropy(proba)}`` when omitted.
    error_term, ood_term : str
        The terms reported as ``error_auroc`` and ``ood_auroc``.
    n_bins : int
        Equal-mass bins of ``ece`` (``ece_equal_width`` uses 15 equal-width bins).

    Returns
    -------
    dict
        :data:`TRUTH_KEYS` plus ``ece_equal_width``, ``selective_area`` (of the
        ``error_term`` ranking), ``confusion_matrix``, ``error_auroc_by_term`` and
        ``ood_auroc_by_term``. AUROCs are ``None`` when the truth holds only one
        of the two groups.
    """
    terms = terms if terms is not None else {"entropy": entropy(proba)}
    error_by = {name: _error_auroc(score, proba, labels) for name, score in terms.items()}
    ood_by = {name: _ood_auroc(score, labels) for name, score in terms.items()}
    return {
        "accuracy": accuracy(proba, labels),
        "macro_f1": macro_f1(proba, labels),
        "nll": negative_log_likelihood(proba, labels),
        "brier": brier_score(proba, labels),
        "ece": expected_calibration_error(proba, labels, n_bins=n_bins, equal_mass=True),
        "ece_equal_width": expected_calibration_error(proba, labels),
        "ood_auroc": ood_by[ood_term],
        "error_auroc": error_by[error_term],
        "selective_area": selective_area(terms[error_term], proba, labels),
        "confusion_matrix": confusion(proba, labels).tolist(),
        "error_auroc_by_term": error_by,
        "ood_auroc_by_term": ood_by,
    }


def per_frame_accuracy(proba: np.ndarray, labels: np.ndarray, frame_starts: np.ndarray) -> list[float | None]:
    """Accuracy of each frame's in-library spectra (``None`` where a frame has none)."""
    bounds = zip(frame_starts, [*frame_starts[1:], len(labels)], strict=True)
    return [accuracy(proba[a:b], labels[a:b]) if (labels[a:b] >= 0).any() else None for a, b in bounds]


def calibration_split(labels: np.ndarray, fraction: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Random split of the in-library spectra: (``fraction`` to fit a recalibration, the rest held out).

    Returns
    -------
    fit, held_out : ndarray of int
        Indices into ``labels``.
    """
    index = np.flatnonzero(labels >= 0)
    index = np.random.default_rng(seed).permutation(index)
    n_fit = round(fraction * len(index))
    return np.sort(index[:n_fit]), np.sort(index[n_fit:])
