"""The spectral fallback (:mod:`eelsprint.inference.spectral`) and the tempered GP it steers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eelsprint.config import ModelConfig, NuisanceConfig
from eelsprint.data.preprocess import shift_spectra
from eelsprint.data.spectra import Library
from eelsprint.exceptions import RepresentationWarning
from eelsprint.inference.selfcheck import PRIOR_VARIANCE, LibraryCheck, temper, warn_if_inseparable
from eelsprint.inference.spectral import choose_fallback, class_residuals, fit_spectral_prior
from eelsprint.inference.uncertainty import GPPosterior, predict_exact, predict_fast
from eelsprint.models.vae import ConvEncoder

ENERGY = np.arange(120) * 0.25


def _library() -> Library:
    """Two close peaks (one class each, the second with two members) and a flat zero class."""
    peak = lambda c, w: np.exp(-0.5 * ((ENERGY - c) / w) ** 2)  # noqa: E731
    spectra = np.stack([peak(12, 2.0), peak(13.5, 2.0), peak(13.5, 2.6), np.zeros_like(ENERGY)])
    return Library(spectra, ENERGY, np.array(["a", "b", "b", "zero"]), "three classes")


def test_a_shifted_fingerprint_is_explained_by_its_own_class() -> None:
    """Known answer: the first-order shift term absorbs a 0.1 eV shift; offset and tilt need "background"."""
    lib = _library()
    shifted = shift_spectra(lib.spectra[:1], ENERGY, np.array([0.1]))
    rss = class_residuals(shifted, lib, (1e-4, 0.0), "shift")
    assert rss.shape == (1, 3)
    assert rss[0, 0] < 0.01 * rss[0, 1:].min()  # measured: 1.0 vs 5.5e3 (class b), 1.4e5 (zero)
    lifted = lib.spectra[1:2] + 0.2 + 0.1 * np.linspace(-1, 1, ENERGY.size)
    assert class_residuals(lifted, lib, (1e-4, 0.0), "background")[0, 1] < 1e-3  # measured: 8e-5 (the ridge)
    assert class_residuals(lifted, lib, (1e-4, 0.0), "shift")[0, 1] > 100  # offset and tilt not free


def test_the_zero_class_and_the_noise_weights() -> None:
    """A flat pixel belongs to the zero class; heteroscedastic weights scale the residual as 1/var."""
    lib = _library()
    rss = class_residuals(np.zeros((1, ENERGY.size)), lib, (1e-2, 0.0), "background")
    assert rss[0].argmin() == 2 and rss[0, 2] == pytest.approx(0.0, abs=1e-9)
    x = lib.spectra[:1] + 0.05
    low, high = (class_residuals(x, lib, (a, 0.0), "shift")[0, 0] for a in (1e-2, 4e-2))
    assert low == pytest.approx(4 * high, rel=1e-6)


def _gp(n_classes: int, latent: int = 8) -> GPPosterior:
    return GPPosterior(
        inducing=torch.randn(n_classes, 4, latent),
        lengthscale=torch.ones(n_classes, latent),
        outputscale=torch.full((n_classes,), 0.5),
        constant=torch.tensor([3.0, 0.0, -3.0][:n_classes]),
        alpha=torch.randn(n_classes, 4),
        cross=torch.eye(4).expand(n_classes, 4, 4) * 0.1,
    )


def _tempered_gp(n_classes: int, latent: int = 8) -> GPPosterior:
    return temper(_gp(n_classes, latent), LibraryCheck(0.33, {}, 0.95, 0.5, 0.5))


def test_a_failed_gp_is_a_wide_prior_and_the_offset_sets_the_labels() -> None:
    gp = _tempered_gp(3)
    assert torch.allclose(gp.outputscale, torch.full((3,), PRIOR_VARIANCE))
    assert not gp.constant.any() and not gp.alpha.any()
    mu, var = torch.randn(5, 8), torch.rand(5, 8)
    offset = torch.log_softmax(torch.tensor([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [0.0, 0.0, 4.0]] * 2)[:5], -1)
    fast = predict_fast(gp, mu, var, offset)
    assert (fast.proba.argmax(-1) == torch.tensor([0, 1, 2, 0, 1])).all()
    # The prior's variance keeps the epistemic term high: measured 0.29 nats at every point.
    assert (fast.epistemic > 0.15).all()
    exact = predict_exact(gp, mu, var, 64, 64, torch.Generator().manual_seed(0), offset)
    # Sigma points at variance 4 read the top class ~0.03 low (measured 0.777 vs 0.80-0.81 by MC).
    assert torch.allclose(exact.proba, fast.proba, atol=0.05)
    # Without the offset every point gets the same uniform answer.
    assert torch.allclose(predict_fast(gp, mu, var).proba, torch.full((5, 3), 1 / 3), atol=1e-5)


def test_the_prior_is_calibrated_on_library_copies() -> None:
    """An untrained encoder and a tempered GP: the chosen temperature labels noisy copies like the spectra."""
    torch.manual_seed(0)
    lib = _library()
    raw = ConvEncoder(ENERGY.size, ModelConfig()).eval()
    nuisance = NuisanceConfig(shift_ev=0.25, broaden_ev=0.25, scale_sd=0.05, background_tilt=0.01)
    noise = (0.5**2, 0.0)  # peaks of height 1: copies hard to tell apart
    prior = fit_spectral_prior(raw, _tempered_gp(3), lib, nuisance, noise)
    # Measured: "background" design, temperature 0.56, copies accuracy 0.88, NLL 0.29 (uniform 1.10).
    assert prior.copies_accuracy > 0.8
    assert prior.copies_nll < 0.4
    assert prior.design in ("shift", "background") and 0.1 < prior.temperature < 10
    again = fit_spectral_prior(raw, _tempered_gp(3), lib, nuisance, noise)
    assert again == prior


def test_a_model_that_passes_its_self_check_is_kept() -> None:
    torch.manual_seed(0)
    gp, raw = _gp(3), ConvEncoder(ENERGY.size, ModelConfig()).eval()
    passed = LibraryCheck(0.9, {}, 0.95, 0.8, 0.7)
    kept, prior, record = choose_fallback(raw, gp, passed, _library(), NuisanceConfig(), (0.25, 0.0))
    assert kept is gp and prior is None and record is None
    failed = LibraryCheck(0.4, {}, 0.95, 0.5, 0.5)
    used, prior, record = choose_fallback(raw, gp, failed, _library(), NuisanceConfig(), (0.25, 0.0))
    # An untrained encoder and a random GP lose to the spectra on the copies (measured NLL 2.73 vs 0.28).
    assert record is not None and record["used"] and prior is not None
    assert record["fallback_nll"] < record["model_nll"]
    # the fallback calibrates on pure copies: mixed copies for the GP leave the choice unchanged
    mixed = NuisanceConfig(mix_share=0.5)
    assert choose_fallback(raw, gp, failed, _library(), mixed, (0.25, 0.0))[2] == record
    assert used.alpha.abs().max() == 0


def test_the_self_check_warning_says_which_model_labels_the_data() -> None:
    failed = LibraryCheck(0.88, {}, 1.0, 0.9, 0.9)
    kept = {"used": False, "model_nll": 0.412, "fallback_nll": 0.553}
    with pytest.warns(RepresentationWarning) as caught:
        warn_if_inseparable(failed, "scan.hspy", kept)
    assert [str(w.message) for w in caught] == [
        "scan.hspy: only 88% of the library's own spectra (at the data's noise) get their own class, "
        "against 100% by nearest fingerprint; the latent model is kept: with the data's nuisance it "
        "beats the spectral fallback on noisy library copies (NLL 0.41 vs 0.55)"
    ]
    with pytest.warns(
        RepresentationWarning, match=r"labels come from the spectral fallback .* 0\.55, latent 0\.41\)$"
    ):
        warn_if_inseparable(failed, "scan.hspy", kept | {"used": True})
    with pytest.warns(RepresentationWarning, match=r"nearest fingerprint$"):
        warn_if_inseparable(failed, "scan.hspy")
