import numpy as np

from eelsprint.config import NuisanceConfig
from eelsprint.data.augment import augment_library, broaden
from eelsprint.data.simulate import fingerprint_library


def test_broaden_keeps_area_and_widens() -> None:
    energy = np.arange(400) * 0.25
    peak = np.exp(-0.5 * ((energy - 50.0) / 1.0) ** 2)[None]
    wide = broaden(peak, energy, np.array([2.0]))
    np.testing.assert_allclose(wide.sum(), peak.sum(), rtol=1e-6)
    var = ((energy - 50.0) ** 2 * wide[0]).sum() / wide[0].sum()
    np.testing.assert_allclose(np.sqrt(var), np.sqrt(1.0 + 4.0), rtol=0.01)


def test_augmented_library_carries_bounded_nuisance() -> None:
    lib = fingerprint_library()
    cfg = NuisanceConfig(n_augment=50, scale_sd=0.05, shift_ev=0.5, broaden_ev=0.5, background_tilt=0.02)
    out = augment_library(lib, cfg, np.random.default_rng(0))
    assert out.spectra.shape == (12 * 51, 240)
    np.testing.assert_array_equal(out.spectra[:12], lib.spectra)
    assert list(out.classes) == list(lib.classes)
    # the all-zero class only gains a background residual, bounded by tilt * max at the ends
    zero = out.spectra[12:][np.repeat(lib.labels, 50) == "F0"]
    bound = 2 * 0.02 * lib.spectra.max()
    assert np.abs(zero).max() <= bound + 1e-12 and np.abs(zero).max() > 0.5 * bound
    # areas scatter by about scale_sd around each copy's own fingerprint (shift and broadening keep area)
    own = np.repeat(lib.spectra, 50, axis=0)
    rich = np.repeat(lib.labels, 50) == "F50"
    ratio = out.spectra[12:][rich].sum(1) / own[rich].sum(1)
    assert abs(np.median(ratio) - 1.0) < 0.03
    assert 0.03 < ratio.std() < 0.08


def test_no_augmentation_returns_library() -> None:
    lib = fingerprint_library()
    assert augment_library(lib, NuisanceConfig(n_augment=0), np.random.default_rng(0)) is lib
