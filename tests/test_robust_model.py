"""Data the simulator did not make: small scans, self-consistency, near-library OOD, real line scans."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from eelsprint import Config, FingerprintClassifier
from eelsprint.config import NuisanceConfig
from eelsprint.data.io import read_spectra
from eelsprint.data.preprocess import pca_denoise, preprocess, shift_spectra
from eelsprint.data.simulate import simulate_series
from eelsprint.data.spectra import Library
from eelsprint.exceptions import ConfigError, RepresentationWarning
from eelsprint.inference.features import (
    NO_NUISANCE,
    FeaturePrior,
    NuisancePrior,
    atom_tests,
    feature_atoms,
    feature_scan,
    library_design,
)
from eelsprint.inference.fitting import with_estimates
from eelsprint.inference.metrics import ood_auroc
from eelsprint.inference.ood import (
    OODScaler,
    estimate_nuisance,
    fit_library,
    library_features,
    noise_model,
    ood_score,
)
from eelsprint.inference.selfcheck import check_library

from .test_cli import run_cli

ROOT = Path(__file__).resolve().parents[1]
SHIPPED = ROOT / "models" / "default"
LSMO = ROOT.parent / "shared" / "data" / "real" / "lsmo" / "LSMO_linescan.hspy"
LSMO_CONFIG = {
    "preprocess": {
        "window": [490, 570],
        "background_window": [490, 520],
        "normalise": "area",
        "pca_components": 5,
    }
}
#: A short schedule for the small-data tests (the step floor, not the epochs, sets the work).
SHORT = {
    "train": {"epochs": 10, "raw_epochs": 10, "gp_iterations": 150, "min_batches": 15},
    "head": {"enabled": False},
}


def _with_extra_peak(pixels: np.ndarray, energy: np.ndarray, height: float, seed: int = 0) -> np.ndarray:
    """Measured-like pixels with one extra Gaussian peak (1 eV wide, anywhere in the window)."""
    rng = np.random.default_rng(seed)
    centre = rng.uniform(energy[20], energy[-20], (len(pixels), 1))
    return pixels + height * np.exp(-0.5 * ((energy - centre) / 1.0) ** 2)


@pytest.mark.slow  # about 20 s each on 2 idle cores (3 min on the loaded shared machine)
@pytest.mark.parametrize("n_spectra", [10, 40])
def test_fits_on_a_line_scan_of_10_or_40_spectra(n_spectra: int) -> None:
    series = simulate_series(n_frames=1, shape=(1, n_spectra), seed=3)
    clf = FingerprintClassifier(config=Config.from_dict(SHORT), progress=False).fit(
        series.spectra, series.library
    )
    proba = clf.predict_proba(series.spectra)
    assert proba.shape == (1, 1, n_spectra, 4)
    np.testing.assert_allclose(proba.sum(-1), 1.0, atol=1e-5)
    check = clf.diagnostics_["library_check"]
    # Every clean fingerprint at the scan's noise gets its own class: measured 1.0 (10 and 40 spectra).
    assert check["self_consistency"] >= 0.9
    truth = series.labels.reshape(-1)
    keep = truth >= 0
    # Measured accuracy: 0.89 (8 of 9 in-library pixels) on 10 spectra, 0.97 on 40.
    assert (proba.reshape(-1, 4)[keep].argmax(1) == truth[keep]).mean() >= 0.75
    assert clf.diagnostics_["n_spectra"] == n_spectra


def test_self_consistency_of_the_shipped_model() -> None:
    if not SHIPPED.is_dir():
        pytest.skip("models/default not found")
    clf = FingerprintClassifier.load(SHIPPED, progress=False)  # 0.2 directory: new entries optional
    frame = simulate_series(n_frames=1, seed=11)
    x = frame.spectra.flat()
    noise_sd = (x - pca_denoise(x, 10)).std(0)
    check = check_library(clf.raw_encoder_, clf.gp_, clf.library_, clf.config_.nuisance, x, noise_sd, 10)
    # Measured: self-consistency 0.995 (nearest fingerprint 1.0); latent probe 0.983, PCA probe 0.983.
    assert check.self_consistency >= 0.95
    assert check.latent_accuracy >= check.pca_accuracy - 0.05
    ds = clf.classify(frame.spectra)
    assert ds["ood_score"].shape == ds["epistemic"].shape
    # the separation probe reads pure copies: mixtures, whose label is a draw, would lower both probes
    mixing = dataclasses.replace(clf.config_.nuisance, mix_share=1.0)
    mixed = check_library(clf.raw_encoder_, clf.gp_, clf.library_, mixing, x, noise_sd, 10)
    assert (mixed.latent_accuracy, mixed.pca_accuracy) == (check.latent_accuracy, check.pca_accuracy)


def test_weighted_library_fit_beats_the_plain_residual_at_low_dose() -> None:
    """Poisson pixels, a few with a small extra peak: the noise-weighted fit finds them."""
    x, library, energy, truth = _peak_pixels(3.0)
    noise = noise_model(x, pca_denoise(x, 10))
    weighted = fit_library(x, library, energy, noise).chi2
    plain = fit_library(x, library, energy, (1.0, 0.0)).chi2
    # Measured AUROC: weighted 0.74, unweighted 0.65.
    assert ood_auroc(weighted, truth) > ood_auroc(plain, truth) + 0.05


def _peak_pixels(height: float, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """3,000 Poisson pixels of three broad fingerprints (5 % scale scatter); the first 300 carry a
    small extra peak of ``height`` counts at 45 eV. Returns pixels, library, energy and truth (-1: peak)."""
    rng = np.random.default_rng(seed)
    energy = np.linspace(0.0, 60.0, 240)
    library = np.stack([30 * np.exp(-0.5 * ((energy - c) / 3) ** 2) + 5 for c in (20, 25, 30)])
    clean = library[rng.integers(0, 3, 3000)] * rng.normal(1, 0.05, (3000, 1))
    clean[:300] += height * np.exp(-0.5 * ((energy - 45) / 1.5) ** 2)
    truth = np.where(np.arange(3000) < 300, -1, 0)
    return rng.poisson(clean).astype(float), library, energy, truth


def test_feature_scan_finds_a_small_peak_that_the_chi_square_misses() -> None:
    """A peak of 3 counts on a level of 5 (1.3 noise sd) in 10 % of the pixels: the scan's matched
    filters find it, and the weights learnt from the unlabelled pixels find it better."""
    x, library, energy, truth = _peak_pixels(3.0)
    noise = noise_model(x, pca_denoise(x, 10))
    fit, found, prior = library_features(x, library, energy, noise)
    scan = found.log_odds
    uniform_prior = FeaturePrior.uniform(len(prior.log_weights))
    uniform = feature_scan(x, library, energy, noise, fit.best, uniform_prior).log_odds
    # Measured AUROC (data seeds 0, 1, 2): learnt 0.991, 0.989, 0.989; uniform weights 0.927, 0.918,
    # 0.940; reduced chi-square 0.740, 0.723, 0.726.
    assert ood_auroc(scan, truth) > 0.97
    assert ood_auroc(scan, truth) > ood_auroc(uniform, truth) + 0.03
    assert ood_auroc(uniform, truth) > ood_auroc(fit.chi2, truth) + 0.15


def _uneven_noise_pixels(seed: int) -> tuple[np.ndarray, ...]:
    """3,000 pixels of three fingerprints whose noise differs by pixel (half of them 2.5 x the
    counting noise); 300 quiet ones carry a small peak (3 counts at 45 eV), 100 are noise alone.
    Returns pixels, library, energy and the masks of the peak and the noise pixels."""
    rng = np.random.default_rng(seed)
    energy = np.linspace(0.0, 60.0, 240)
    library = np.stack([30 * np.exp(-0.5 * ((energy - c) / 3) ** 2) + 5 for c in (20, 25, 30)])
    clean = library[rng.integers(0, 3, 3000)]
    peak, noisy = np.arange(3000) < 300, (np.arange(3000) >= 300) & (np.arange(3000) < 400)
    clean[peak] += 3.0 * np.exp(-0.5 * ((energy - 45) / 1.5) ** 2)
    amplify = np.where(peak | (rng.random(3000) < 0.5), 1.0, 2.5)
    x = clean + (rng.poisson(clean) - clean) * amplify[:, None]
    x[noisy] = 15 + 12 * rng.standard_normal((100, 240))
    return x, library, energy, peak, noisy


def test_scan_reads_each_pixel_against_its_own_noise() -> None:
    """Pixels as noisy as each other only on average (edge normalisation, dose and background
    differ by pixel): the scan's statistics in the pixel's own noise find a small peak that the
    same statistics in the model's noise miss, and ``ood_score`` still flags pixels of noise alone
    through their noise scale, which the scan itself ignores."""
    x, library, energy, peak, noisy = _uneven_noise_pixels(0)
    noise = noise_model(x, pca_denoise(x, 10))
    fit, scan, prior = library_features(x, library, energy, noise)
    t, log_noise = atom_tests(x, library, energy, noise, fit.best)
    in_model_noise = t * np.exp(log_noise / 2)[:, None]
    unscaled = FeaturePrior.learn(in_model_noise).log_odds(in_model_noise)
    score = ood_score(scan, OODScaler.learn(scan, noise, prior, NO_NUISANCE))
    library_pixels = ~(peak | noisy)
    with_peak, with_noise = peak | library_pixels, noisy | library_pixels
    truth_peak, truth_noise = np.where(peak, -1, 0)[with_peak], np.where(noisy, -1, 0)[with_noise]
    # Measured (data seeds 0, 1, 2): peak: own noise 0.981, 0.979, 0.980; model noise 0.568, 0.523,
    # 0.535; ood_score 0.970, 0.964, 0.975. Noise alone: ood_score 0.920, 0.918, 0.920; the scan
    # alone 0.511, 0.568, 0.541.
    assert ood_auroc(scan.log_odds[with_peak], truth_peak) > 0.95
    assert ood_auroc(unscaled[with_peak], truth_peak) < 0.7
    assert ood_auroc(score[with_peak], truth_peak) > 0.94
    assert ood_auroc(score[with_noise], truth_noise) > 0.88
    assert ood_auroc(scan.log_odds[with_noise], truth_noise) < 0.65


def test_atom_tests_are_standard_normal_under_the_noise_model() -> None:
    """Pixels that are their fingerprint plus Gaussian noise of the stated model: every atom's
    statistic is standard normal, for every fingerprint and dose."""
    rng = np.random.default_rng(1)
    energy = np.linspace(0.0, 60.0, 240)
    library = np.stack([30 * np.exp(-0.5 * ((energy - c) / 3) ** 2) + 5 for c in (20, 40)])
    which = rng.integers(0, 2, 4000)
    dose = np.where(np.arange(4000) < 2000, 1.0, 3.0)
    mean = library[which] * dose[:, None]
    x = mean + rng.normal(size=mean.shape) * np.sqrt(0.5 + mean)
    for d in (1.0, 3.0):  # the weights at each dose's level: the library scaled by the dose
        rows = dose == d
        t = atom_tests(x[rows], d * library, energy, (0.5, 1.0), which[rows])[0]
        for k in (0, 1):
            group = t[which[rows] == k]
            # Measured: means within 0.003 of 0, sds 0.987-0.999 pooled, 0.93-1.07 per atom (~1,000 px).
            assert abs(float(group.mean())) < 0.02
            assert 0.97 < float(group.std()) < 1.03
            assert np.all((group.std(0) > 0.85) & (group.std(0) < 1.15))


def test_shift_prior_keeps_misaligned_pixels_near_the_null() -> None:
    """Sharp fingerprints shifted by 0.3 eV (sd) at high dose: without a shift term the residual of
    the misalignment looks like peaks (atom statistics far from standard normal); with the prior
    the scan takes from the augmentation's range they stay close to it."""
    rng = np.random.default_rng(0)
    energy = np.linspace(0.0, 60.0, 240)
    library = np.stack([300 * np.exp(-0.5 * ((energy - c) / 1.5) ** 2) + 20 for c in (20, 40)])
    which = rng.integers(0, 2, 3000)
    shifted = shift_spectra(library[which], energy, rng.normal(0.0, 0.3, 3000))
    x = shifted + rng.normal(size=shifted.shape) * np.sqrt(0.5 + shifted)
    without = atom_tests(x, library, energy, (0.5, 1.0), which, NO_NUISANCE)[0]
    with_prior = atom_tests(x, library, energy, (0.5, 1.0), which, NuisancePrior(shift_sd=0.3))[0]
    # Measured (data seeds 0, 1, 2): pooled sd 1.775, 1.773, 1.767 -> 1.117, 1.124, 1.123; largest
    # atom's sd 6.42-6.49 -> 1.70-1.71 (the first-order term leaves the second-order residual).
    assert float(without.std()) > 1.6
    assert float(without.std(0).max()) > 5.0
    assert float(with_prior.std()) < 1.2
    assert float(with_prior.std(0).max()) < 2.0


def test_nuisance_prior_closed_form_equals_explicit_whitening() -> None:
    """The scan's per-pixel closed form against the definition: whiten each pixel and every atom by
    ``C^-1/2``, ``C = 1 + N diag(a^2 sd^2) N'`` (N: the shift and broadening columns beyond the
    free terms, a: the pixel's fitted scale), project out the free terms, divide by the
    median-based noise scale."""
    rng = np.random.default_rng(0)
    energy = np.linspace(0.0, 60.0, 240)
    library = np.stack([300 * np.exp(-0.5 * ((energy - c) / 1.5) ** 2) + 20 for c in (20, 40)])
    which = rng.integers(0, 2, 30)
    x = library[which] * rng.normal(1, 0.1, (30, 1))
    x += rng.normal(size=x.shape) * np.sqrt(0.5 + library[which])
    prior = NuisancePrior(shift_sd=0.3, broaden_sd=0.05)
    t, log_noise = atom_tests(x, library, energy, (0.5, 1.0), which, prior)
    designs, atoms = library_design(library, energy), feature_atoms(energy).T
    for i in range(len(x)):
        root_w = 1 / np.sqrt(0.5 + library[which[i]])
        design, y = designs[which[i]] * root_w[:, None], x[i] * root_w
        scale = np.linalg.lstsq(design[:, :3], y, rcond=None)[0][0]
        q = np.linalg.qr(design[:, :3])[0]
        project = np.eye(240) - q @ q.T
        second = np.gradient(np.gradient(library[which[i]], energy), energy) * root_w
        columns = project @ np.stack([design[:, 3], second], 1)
        covariance = np.eye(240) + columns @ np.diag((scale * np.array([0.3, 0.05])) ** 2) @ columns.T
        values, vectors = np.linalg.eigh(covariance)
        whiten = vectors @ np.diag(values**-0.5) @ vectors.T
        tested = project @ whiten @ (atoms * root_w[:, None])
        residual = project @ whiten @ y
        noise_scale = np.median(residual**2) / 0.454936
        expected = (whiten @ y) @ tested / np.linalg.norm(tested, axis=0) / np.sqrt(noise_scale)
        assert np.allclose(t[i], expected, atol=1e-5, rtol=1e-5)  # t is float32
        assert log_noise[i] == pytest.approx(np.log(noise_scale), rel=1e-8)


def test_feature_prior_puts_its_weight_on_the_atom_the_pixels_share() -> None:
    """Known answer: 500 of 5,000 pixels carry a feature of 4 sd at atom 7 of 50."""
    rng = np.random.default_rng(2)
    t = rng.normal(size=(5000, 50))
    t[:500, 7] += 4.0
    prior = FeaturePrior.learn(t)
    weights = np.exp(np.array(prior.log_weights))
    # Measured: null 0.785, atom 7 0.211, every other atom <= 0.0011 (0.0035 in all).
    assert weights[7] > 0.9 * (1 - np.exp(prior.log_null))
    assert 0.7 < np.exp(prior.log_null) < 0.9
    assert np.delete(weights, 7).max() < 0.01


def test_feature_prior_keeps_half_the_pixels_featureless() -> None:
    """Ten pixels that all share a feature: EM would put every pixel in it (log of a zero null
    weight); the null weight stays at its floor of one half."""
    rng = np.random.default_rng(3)
    t = rng.normal(size=(10, 50))
    t[:, 3] += 4.0
    prior = FeaturePrior.learn(t)
    assert np.exp(prior.log_null) == pytest.approx(0.5)
    assert np.exp(prior.log_weights[3]) == pytest.approx(0.5, abs=0.01)
    assert np.isfinite(prior.log_odds(t)).all()


# Measured AUROC (ood_score, epistemic): peak 0.3: 0.723, 0.501; peak 0.6: 0.892, 0.593 (the scan
# before the pixels' own noise scales and the shift prior: 0.733 and 0.893).
@pytest.mark.parametrize(("height", "margin"), [(0.3, 0.15), (0.6, 0.2)])
def test_ood_score_beats_epistemic_on_near_library_foreign_spectra(height: float, margin: float) -> None:
    """Pixels with an extra peak among a simulated frame's in-library pixels.

    The shipped model, with the scan's weights and standardisation it stores (learnt on its
    training series).
    """
    if not SHIPPED.is_dir():
        pytest.skip("models/default not found")
    clf = FingerprintClassifier.load(SHIPPED, progress=False)
    series = simulate_series(n_frames=1, seed=12)
    inside = series.spectra.flat()[series.labels.reshape(-1) >= 0]
    # Half the in-library pixels get a peak (0.3: about twice the per-channel noise, a fifth of the
    # library's maximum): near-library foreign spectra that carry the data's own nuisance.
    foreign = _with_extra_peak(inside[1::2], series.spectra.energy, height)
    ds = clf.classify(np.concatenate([inside[::2], foreign]), series.spectra.energy)
    truth = np.r_[np.zeros(len(inside[::2])), -np.ones(len(foreign))]
    ood = ood_auroc(ds["ood_score"].values, truth)
    epistemic = ood_auroc(ds["epistemic"].values, truth)
    assert ood > epistemic + margin


@pytest.mark.slow
@pytest.mark.skipif(not LSMO.is_file(), reason="shared LSMO line scan not found")
def test_lsmo_line_scan_recognises_its_own_library() -> None:
    """The issue's case: 40 pixels, library = means of the first and last 5 preprocessed pixels."""
    scan = read_spectra(LSMO)
    cfg = Config.from_dict(LSMO_CONFIG | {"head": {"enabled": False}})
    data = preprocess(scan, cfg.preprocess)
    ends = np.stack([data.data[:5].mean(0), data.data[-5:].mean(0)])
    lib = Library(ends, data.energy, np.array(["start", "end"]), "lsmo_ends.csv")
    nearest = ((data.data[:, None] - ends[None]) ** 2).sum(-1).argmin(1)
    clf = FingerprintClassifier(config=cfg, progress=False).fit(scan, lib)
    ds = clf.classify(scan)
    label = ds["label"].values
    assert (label[:5] == 0).all() and (label[-5:] == 1).all()
    # Measured: agreement with nearest fingerprint 1.0 (40/40); self-consistency 1.0. (Before: one label
    # everywhere, agreement 0.6.)
    assert (label == nearest).mean() >= 0.9
    assert clf.diagnostics_["library_check"]["self_consistency"] >= 0.95


@pytest.mark.skipif(not LSMO.is_file(), reason="shared LSMO line scan not found")
def test_fit_warns_when_the_latent_cannot_separate_the_library() -> None:
    """Without the library term and with almost no training, the latent ignores the two LSMO ends."""
    scan = read_spectra(LSMO)
    cfg = Config.from_dict(LSMO_CONFIG)
    data = preprocess(scan, cfg.preprocess)
    ends = np.stack([data.data[:5].mean(0), data.data[-5:].mean(0)])
    lib = Library(ends, data.energy, np.array(["start", "end"]), "lsmo_ends.csv")
    weak = Config.from_dict(
        LSMO_CONFIG
        | {
            "train": {
                "epochs": 2,
                "raw_epochs": 2,
                "gp_iterations": 50,
                "min_batches": 1,
                "library_weight": 0.0,
            },
            "head": {"enabled": False},
        }
    )
    with pytest.warns(RepresentationWarning, match="get their own class"):
        clf = FingerprintClassifier(config=weak, progress=False).fit(scan, lib)
    check = clf.diagnostics_["library_check"]
    # Measured: self-consistency 0.5 against 1.0 by nearest fingerprint.
    assert check["nearest_self_consistency"] - check["self_consistency"] > 0.1
    ds = clf.classify(scan)
    label, epistemic = ds["label"].values, ds["epistemic"].values
    nearest = ((data.data[:, None] - ends[None]) ** 2).sum(-1).argmin(1)
    print(
        "failed representation: agreement",
        (label == nearest).mean(),
        "epistemic",
        epistemic.min(),
        epistemic.max(),
    )
    # The GP is tempered to its prior and the labels come from the spectral fallback: they follow the
    # spectra (measured: agreement 1.0 with nearest fingerprint; before the fallback one label
    # everywhere at confidence 0.51). Where the spectra decide clearly, as here, the prior's variance
    # mostly no longer shows (measured epistemic 0 to 0.14 nats): the result says where its labels come from.
    assert clf.diagnostics_["spectral_prior"] is not None
    choice = clf.diagnostics_["fallback_choice"]
    print("fallback choice", choice)
    assert choice["used"] and choice["fallback_nll"] < choice["model_nll"]
    assert ds.attrs["labels_from"] == "spectral fallback"
    assert (label[:5] == 0).all() and (label[-5:] == 1).all()
    assert (label == nearest).mean() >= 0.9
    with pytest.raises(ConfigError, match="spectral fallback"):
        clf.distil_head(scan).predict(scan, mode="head")


def _nuisance_case(peak_counts: float, scale_sd: float, shift_ev: float) -> tuple[dict[str, float], float]:
    """Poisson pixels of three two-peak fingerprints with a normalisation scatter and uniform
    shifts, no tilt: the estimate and the noise model's beta (Poisson: 1)."""
    rng = np.random.default_rng(0)
    energy = np.arange(240) * 0.25
    library = peak_counts * np.stack(
        [
            np.exp(-0.5 * ((energy - c) / 3) ** 2) + 0.5 * np.exp(-0.5 * ((energy - c - 15) / 5) ** 2)
            for c in (15, 22, 29)
        ]
    )
    clean = shift_spectra(library[rng.integers(0, 3, 4000)], energy, rng.uniform(-shift_ev, shift_ev, 4000))
    x = rng.poisson(np.maximum(clean * rng.normal(1, scale_sd, (4000, 1)), 0)).astype(float)
    noise = noise_model(x, pca_denoise(x, 10))
    return estimate_nuisance(fit_library(x, library, energy, noise), library, noise), noise[1]


def test_nuisance_is_estimated_from_the_data() -> None:
    """100 counts at the peak, 10 % normalisation scatter, shifts uniform in +-0.5 eV."""
    estimate, beta = _nuisance_case(100.0, 0.1, 0.5)
    # Measured: scale_sd 0.1006, shift_ev 0.64 (the first-order shift term reads high), tilt 0.0;
    # noise model beta 0.87 (Poisson: 1).
    assert abs(estimate["scale_sd"] - 0.1) < 0.02
    assert 0.35 < estimate["shift_ev"] < 0.8
    assert estimate["background_tilt"] < 0.01
    assert 0.7 < beta < 1.2


def test_counting_noise_is_not_read_as_nuisance() -> None:
    """3 counts at the peak: the coefficients' spread is mostly noise, which the estimate takes out.

    Measured with 10 % scatter and +-0.5 eV: scale_sd 0.107, shift_ev 0.60 (without taking the noise
    out: 0.130, 0.80); with none: 0.029, 0.10 (without: 0.080, 0.55).
    """
    with_nuisance, _ = _nuisance_case(3.0, 0.1, 0.5)
    assert abs(with_nuisance["scale_sd"] - 0.1) < 0.02
    assert 0.4 < with_nuisance["shift_ev"] < 0.7
    without, _ = _nuisance_case(3.0, 0.0, 0.0)
    assert without["scale_sd"] < 0.05
    assert without["shift_ev"] < 0.2


def test_the_data_widen_the_augmentation_only_where_they_show_clearly_more() -> None:
    """Configured ranges are floors: an estimate replaces one only above 1.5 times it."""
    config = NuisanceConfig(estimate=True)  # scale_sd 0.08, shift_ev 0.5, background_tilt 0.03
    estimate = {"scale_sd": 0.24, "shift_ev": 0.7, "background_tilt": 0.01, "noise_sd": 0.2}
    wider = with_estimates(config, estimate)
    assert (wider.scale_sd, wider.shift_ev, wider.background_tilt) == (0.24, 0.5, 0.03)
    assert wider.broaden_ev == config.broaden_ev and wider.n_augment == config.n_augment
    fixed = dataclasses.replace(config, estimate=False)
    assert with_estimates(fixed, estimate) == fixed
    # the default widens the background residual only; a list names the ranges
    wide_tilt = estimate | {"background_tilt": 0.12}
    default = with_estimates(NuisanceConfig(), wide_tilt)
    assert (default.scale_sd, default.shift_ev, default.background_tilt) == (0.08, 0.5, 0.12)
    shift_only = with_estimates(NuisanceConfig(estimate=("shift_ev",), shift_ev=0.4), wide_tilt)
    assert (shift_only.scale_sd, shift_only.shift_ev, shift_only.background_tilt) == (0.08, 0.7, 0.03)


def test_nuisance_estimate_names_are_checked() -> None:
    assert Config.from_dict({"nuisance": {"estimate": ["scale_sd"]}}).nuisance.estimate == ("scale_sd",)
    message = r"estimate must be true, false or a list of scale_sd, .* got \['tilt'\]$"
    with pytest.raises(ConfigError, match=message):
        Config.from_dict({"nuisance": {"estimate": ["tilt"]}})
    with pytest.raises(ConfigError, match=r"a list of scale_sd, .* got 'background_tilt'$"):
        Config.from_dict({"nuisance": {"estimate": "background_tilt"}})  # a string, not a list
    assert NuisanceConfig(estimate=["shift_ev"]).estimate == ("shift_ev",)  # a list from Python


@pytest.mark.skipif(not LSMO.is_file(), reason="shared LSMO line scan not found")
def test_fit_command_says_when_it_falls_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The weak LSMO fit through `eelsprint fit`: one warning line, then the fallback named in the summary."""
    scan = read_spectra(LSMO)
    data = preprocess(scan, Config.from_dict(LSMO_CONFIG).preprocess)
    library = tmp_path / "ends.csv"
    ends = np.column_stack([data.energy, data.data[:5].mean(0), data.data[-5:].mean(0)])
    np.savetxt(library, ends, delimiter=",", header="energy_eV,start,end", comments="")
    toml = "\n".join(f"{k} = {v!r}".replace("'", '"') for k, v in LSMO_CONFIG["preprocess"].items())
    weak = "[train]\nepochs = 2\nraw_epochs = 2\ngp_iterations = 50\nmin_batches = 1\nlibrary_weight = 0.0\n"
    (tmp_path / "weak.toml").write_text(f"[preprocess]\n{toml}\n{weak}")
    config, model = tmp_path / "weak.toml", tmp_path / "m"
    code, out, err = run_cli(
        monkeypatch, capsys, "fit", str(LSMO), "-l", str(library), "-c", str(config), "-o", str(model)
    )
    assert code == 0, err
    assert "get their own class" in err
    assert "labels come from the spectral fallback" in out
    assert FingerprintClassifier.load(model).diagnostics_["spectral_prior"] is not None
