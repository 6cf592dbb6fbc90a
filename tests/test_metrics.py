"""Known values of the scores every calibration claim rests on: ECE by hand, NLL and Brier against
scikit-learn, AUROC against the Mann-Whitney U statistic (scipy)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu
from sklearn.metrics import brier_score_loss, log_loss

from eelsprint.inference.metrics import (
    brier_score,
    ece_floor,
    error_auroc,
    expected_calibration_error,
    negative_log_likelihood,
    ood_auroc,
)

#: Six spectra, three classes: top-label confidence and whether the top label is right.
CONF = np.array([0.45, 0.55, 0.65, 0.75, 0.85, 0.95])
HIT = np.array([0, 1, 0, 1, 1, 1], dtype=bool)


def _hand_case() -> tuple[np.ndarray, np.ndarray]:
    """Class 0 is predicted with probability ``CONF``; the label is 0 on a hit, 1 on a miss.

    A seventh spectrum with label -1 (no library class) must be ignored by every score.
    """
    proba = np.column_stack([CONF, (1 - CONF) / 2, (1 - CONF) / 2])
    labels = np.where(HIT, 0, 1)
    proba = np.vstack([proba, [0.98, 0.01, 0.01]])
    return proba, np.append(labels, -1)


@pytest.mark.parametrize(
    ("n_bins", "equal_mass", "expected"),
    [
        # 10 equal-width bins: every spectrum alone, |conf - hit| averaged:
        # (.45 + .45 + .65 + .25 + .15 + .05) / 6
        (10, False, 2.0 / 6),
        # edges 0, .5, 1: {.45} gap .45 (weight 1/6); {.55..95} conf .75, accuracy .8 (weight 5/6)
        (2, False, 0.45 / 6 + 0.05 * 5 / 6),
        # equal mass, 2 bins: {.45, .55, .65} conf .55 vs accuracy 1/3; {.75, .85, .95} conf .85 vs 1
        (2, True, 0.5 * (0.55 - 1 / 3) + 0.5 * 0.15),
        # equal mass, 3 bins: {.45, .55} gap 0; {.65, .75} conf .7 vs .5; {.85, .95} conf .9 vs 1
        (3, True, (0.0 + 0.2 + 0.1) / 3),
    ],
)
def test_ece_matches_hand_computed_values(n_bins: int, equal_mass: bool, expected: float) -> None:
    proba, labels = _hand_case()
    assert expected_calibration_error(proba, labels, n_bins, equal_mass) == pytest.approx(expected, abs=1e-12)


def test_ece_of_calibrated_and_overconfident_draws() -> None:
    """Labels drawn from the probabilities: ECE near 0 (sampling noise only); claiming 1.0 for the
    same labels: ECE = 1 - accuracy exactly (one bin holds everything)."""
    rng = np.random.default_rng(0)
    proba = rng.dirichlet([1.0, 1.0, 1.0, 1.0], size=40_000)
    labels = (proba.cumsum(-1) < rng.random((len(proba), 1))).sum(-1)
    # Sampling noise alone: |gap| ~ 0.8 sqrt(p(1-p)/2,667) ~ 0.008 per bin of 40,000 / 15 spectra.
    # measured: 0.0055 (equal width), 0.0107 (equal mass) (seed 0; seeds 0-4 reach 0.0071 / 0.0107)
    assert expected_calibration_error(proba, labels, 15) < 0.015
    assert expected_calibration_error(proba, labels, 15, equal_mass=True) < 0.015
    onehot = np.eye(4)[proba.argmax(-1)]
    acc = (proba.argmax(-1) == labels).mean()
    for equal_mass in (False, True):
        assert expected_calibration_error(onehot, labels, 15, equal_mass) == pytest.approx(1 - acc)


def test_ece_floor_is_what_a_calibrated_model_scores_and_falls_with_the_sample() -> None:
    """The floor is the median ECE of label sets drawn from the probabilities: independent draws
    of a calibrated model's labels land around it, it falls about as 1/sqrt(n), it ignores
    spectra without a library class, and an overconfident model scores far above it."""
    rng = np.random.default_rng(3)
    floors = {}
    for n in (1_500, 15_000):
        proba = rng.dirichlet([0.3] * 4, size=n)
        floors[n] = ece_floor(proba, np.zeros(n, int), seed=1)
        draws = [
            expected_calibration_error(proba, (proba.cumsum(-1) < rng.random((n, 1))).sum(-1))
            for _ in range(40)
        ]
        # measured (seed 3): n = 1,500: floor 0.0264, independent draws' median 0.0243;
        # n = 15,000: 0.0082 and 0.0086
        assert np.median(draws) == pytest.approx(floors[n], rel=0.15)
    assert 2.0 < floors[1_500] / floors[15_000] < 4.5  # sqrt(10) = 3.2; measured 3.21
    proba = rng.dirichlet([0.3] * 4, size=1_500)
    labels = np.r_[np.zeros(1_500, int), -np.ones(500, int)]
    with_foreign = np.vstack([proba, np.full((500, 4), 0.25)])
    assert ece_floor(with_foreign, labels) == ece_floor(proba, labels[:1_500])
    sharp = proba**4 / (proba**4).sum(-1, keepdims=True)  # the same labels claimed more surely
    labels = (proba.cumsum(-1) < rng.random((1_500, 1))).sum(-1)
    assert expected_calibration_error(sharp, labels) > 3 * ece_floor(sharp, labels)  # 0.25 vs 0.015


def test_nll_and_brier_match_scikit_learn() -> None:
    rng = np.random.default_rng(1)
    proba = rng.dirichlet([0.5, 1.0, 2.0, 1.0], size=500)
    labels = rng.integers(0, 4, size=500)
    assert negative_log_likelihood(proba, labels) == pytest.approx(
        log_loss(labels, proba, labels=range(4)), rel=1e-10
    )
    assert brier_score(proba, labels) == pytest.approx(
        brier_score_loss(labels, proba, labels=range(4), scale_by_half=False), rel=1e-10
    )
    # spectra in no library class (label -1) are left out of both
    with_ood = np.append(labels, [-1, -1])
    proba_ood = np.vstack([proba, [[1.0, 0.0, 0.0, 0.0]] * 2])
    assert negative_log_likelihood(proba_ood, with_ood) == pytest.approx(log_loss(labels, proba), rel=1e-10)
    assert brier_score(proba_ood, with_ood) == pytest.approx(brier_score(proba, labels), rel=1e-12)


def test_nll_of_a_one_hot_error_is_clipped_at_1e_12() -> None:
    proba = np.array([[1.0, 0.0], [0.0, 1.0]])
    assert negative_log_likelihood(proba, np.array([0, 0])) == pytest.approx(-np.log(1e-12) / 2)
    assert brier_score(proba, np.array([0, 0])) == pytest.approx(1.0)  # (0 + 2) / 2


def test_auroc_is_the_mann_whitney_u_statistic() -> None:
    """AUROC = U / (n_pos n_neg), ties counted one half; scores rounded to make ties."""
    rng = np.random.default_rng(2)
    labels = np.where(rng.random(400) < 0.2, -1, rng.integers(0, 3, 400))
    score = np.round(rng.normal(size=400) + 0.8 * (labels < 0), 1)
    u = mannwhitneyu(score[labels < 0], score[labels >= 0]).statistic
    expected = u / ((labels < 0).sum() * (labels >= 0).sum())
    assert ood_auroc(score, labels) == pytest.approx(expected, rel=1e-12)
    proba = rng.dirichlet([1.0, 1.0, 1.0], size=400)
    keep = labels >= 0
    wrong = proba[keep].argmax(-1) != labels[keep]
    u = mannwhitneyu(score[keep][wrong], score[keep][~wrong]).statistic
    assert error_auroc(score, proba, labels) == pytest.approx(u / (wrong.sum() * (~wrong).sum()), rel=1e-12)
