"""The shipped ``models/default`` on fresh simulated series: against its model card, against the
simple baselines, and the claim that integrating the encoder's variance helps (out of sample,
several series, paired differences with their spread)."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from eelsprint import FingerprintClassifier
from eelsprint.data.simulate import SimulatedSeries, simulate_series
from eelsprint.inference.metrics import (
    accuracy,
    brier_score,
    ece_floor,
    error_auroc,
    expected_calibration_error,
    negative_log_likelihood,
    ood_auroc,
)
from eelsprint.inference.recalibrate import latent_moments, scaled_proba
from eelsprint.report.scoring import entropy

from .conftest import ROOT
from .quality import SHIPPED_FRESH, check_classifier

CARD_JSON = ROOT / "evaluation" / "results" / "model_card_metrics.json"
#: Fresh series: not the training series (seed 0), not the model card's (1, 2, 3).
SEEDS = (4, 5, 6, 7)


@pytest.fixture(scope="module")
def series_by_seed(fresh: SimulatedSeries) -> dict[int, SimulatedSeries]:
    return {4: fresh} | {seed: simulate_series(n_frames=6, seed=seed) for seed in SEEDS[1:]}


@pytest.fixture(scope="module")
def variants(
    shipped: FingerprintClassifier, series_by_seed: dict[int, SimulatedSeries]
) -> dict[int, dict[str, Any]]:
    """Per series: labels, eelsprint's result and the two ablations' probabilities (same GP)."""
    out = {}
    for seed, series in series_by_seed.items():
        x = series.spectra.flat()
        ds = shipped.classify(x)
        mean0, var0 = latent_moments(shipped, x, encoder_variance=False)
        out[seed] = {
            "labels": series.labels.reshape(-1),
            "result": ds,
            "eelsprint": ds["proba"].values,
            "latent_mean": scaled_proba(mean0, var0),
            "plugin_softmax": scaled_proba(mean0, 0 * var0),
            "residual": _nearest_residual(x, series.library.spectra),
        }
    return out


def _nearest_residual(x: np.ndarray, library: np.ndarray) -> np.ndarray:
    """Squared distance of each spectrum to its nearest library spectrum, shape (n,)."""
    return ((x**2).sum(-1, keepdims=True) - 2 * x @ library.T + (library**2).sum(-1)).min(-1)


def test_shipped_model_beats_the_baselines(shipped: FingerprintClassifier, fresh: SimulatedSeries) -> None:
    check_classifier(shipped, fresh, SHIPPED_FRESH)


def test_shipped_model_matches_its_model_card(variants: dict[int, dict[str, Any]]) -> None:
    """Each score on a fresh series within 3 sd (the card's spread over its series) of the card's mean,
    with the card's definitions (ECE: 10 equal-mass bins; OOD: epistemic; errors: entropy)."""
    card = json.loads(CARD_JSON.read_text())["summary"]["eelsprint"]
    v = variants[4]
    y, ds, proba = v["labels"], v["result"], v["eelsprint"]
    measured = {
        "accuracy": accuracy(proba, y),  # measured: 0.9668 (seed 4)
        "nll": negative_log_likelihood(proba, y),  # measured: 0.0847 (seed 4)
        "brier": brier_score(proba, y),  # measured: 0.0491 (seed 4)
        "ece": expected_calibration_error(proba, y, n_bins=10, equal_mass=True),  # measured: 0.0127 (seed 4)
        "ood_auroc": ood_auroc(ds["epistemic"].values, y),  # measured: 1.0 (seed 4)
        "error_auroc": error_auroc(ds["entropy"].values, proba, y),  # measured: 0.9605 (seed 4)
    }
    # ECE is biased upwards on finite data, by about what a perfectly calibrated model would score
    # on this series (0.0039 here); the card's sd over three series can fall below that (0.0018)
    floor = {"ece": ece_floor(proba, y, n_bins=10, equal_mass=True)}
    for key, value in measured.items():
        mean, sd = card[key]["mean"], card[key]["sd"]
        assert abs(value - mean) <= 3 * sd + floor.get(key, 0.0), (key, value, mean, sd)


def _score(v: dict[str, Any], name: str, score: str) -> float:
    """One score of eelsprint or an ablation; OOD by epistemic (eelsprint) or by entropy (ablations)."""
    if score == "ood":
        term = v["result"]["epistemic"].values if name == "eelsprint" else entropy(v[name])
        return ood_auroc(term, v["labels"])
    if score == "ece":  # the model card's definition: 10 equal-mass bins
        return expected_calibration_error(v[name], v["labels"], n_bins=10, equal_mass=True)
    return negative_log_likelihood(v[name], v["labels"])


def _paired(variants: dict[int, dict[str, Any]], score: str, ablation: str) -> np.ndarray:
    """eelsprint's score minus the ablation's, one per series."""
    return np.array([_score(v, "eelsprint", score) - _score(v, ablation, score) for v in variants.values()])


def test_encoder_variance_beats_the_plain_softmax_out_of_sample(variants: dict[int, dict[str, Any]]) -> None:
    """Integrating the encoder's (and GP's) variance vs the plain softmax of the GP mean at the latent
    mean, on 4 fresh series: lower ECE, lower NLL and a higher OOD AUROC on every one.

    measured (seeds 4-7): ECE diff -0.0066 / -0.0099 / -0.0088 / -0.0079 (mean -0.0083 +- 0.0012);
    NLL diff -0.014 / -0.010 / -0.011 / -0.010; OOD AUROC diff +0.005 / +0.002 / +0.005 / +0.007
    (eelsprint's epistemic at 1.000 on each: the simulator's outliers are easy, see below).
    """
    ece = _paired(variants, "ece", "plugin_softmax")
    assert (ece < 0).all(), ece
    assert ece.mean() < -0.005, ece  # measured: -0.0083 +- 0.0012
    nll = _paired(variants, "nll", "plugin_softmax")
    assert (nll < 0).all(), nll
    ood = _paired(variants, "ood", "plugin_softmax")
    assert (ood > 0.001).all(), ood  # measured: +0.0024 at least


def test_encoder_variance_lowers_ece_against_the_gp_at_the_latent_mean(
    variants: dict[int, dict[str, Any]],
) -> None:
    """What the model card says: against the GP's predictive at the latent mean (encoder variance
    ignored), integrating the encoder's variance lowers the ECE and the NLL out of sample, a little,
    on every series (with the GP on clean latents the ECE differences changed sign between series).
    The OOD AUROC is 1.000 either way on the simulator. If this fails, the finding changed: update
    the model card.

    measured (seeds 4-7): ECE diff -0.0023 / -0.0035 / -0.0031 / -0.0024 (mean -0.0028 +- 0.0005);
    NLL diff -0.0031 / -0.0032 / -0.0024 / -0.0021; OOD AUROC diff 0 / 0 / +0.00001 / +0.00001.
    """
    ece = _paired(variants, "ece", "latent_mean")
    assert (ece < 0).all(), ece
    assert ece.mean() < -0.001, ece  # measured: -0.0028
    nll = _paired(variants, "nll", "latent_mean")
    assert (nll < 0).all(), nll
    ood = _paired(variants, "ood", "latent_mean")
    assert (ood >= 0).all(), ood


def test_simulated_outliers_are_easy_for_a_residual(variants: dict[int, dict[str, Any]]) -> None:
    """Honest baseline for the OOD claim: the nearest-fingerprint residual separates the simulator's
    out-of-library pixels perfectly, so OOD AUROCs on the simulator show no advantage of eelsprint
    over the simplest detector. eelsprint's epistemic term stays within 0.01 of it.

    measured (seeds 4-7): residual 1.0000 each; epistemic 0.9986 / 0.9968 / 0.9981 / 0.9997.
    """
    for v in variants.values():
        residual = ood_auroc(v["residual"], v["labels"])
        epistemic = ood_auroc(v["result"]["epistemic"].values, v["labels"])
        assert residual > 0.999, residual
        assert epistemic > residual - 0.01, (epistemic, residual)
