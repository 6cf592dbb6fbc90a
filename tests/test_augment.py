import dataclasses

import numpy as np

from eelsprint.config import NuisanceConfig
from eelsprint.data.augment import augment_library, broaden
from eelsprint.data.simulate import fingerprint_library
from eelsprint.data.spectra import Library
from eelsprint.inference.train import gp_copies


def test_broaden_keeps_area_and_widens() -> None:
    energy = np.arange(400) * 0.25
    peak = np.exp(-0.5 * ((energy - 50.0) / 1.0) ** 2)[None]
    wide = broaden(peak, energy, np.array([2.0]))
    np.testing.assert_allclose(wide.sum(), peak.sum(), rtol=1e-6)
    var = ((energy - 50.0) ** 2 * wide[0]).sum() / wide[0].sum()
    np.testing.assert_allclose(np.sqrt(var), np.sqrt(1.0 + 4.0), rtol=0.01)


def test_augmented_library_carries_bounded_nuisance() -> None:
    lib = fingerprint_library()
    cfg = NuisanceConfig(
        n_augment=50, scale_sd=0.05, shift_ev=0.5, broaden_ev=0.5, background_tilt=0.02, mix_share=0.0
    )
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


def _peaks() -> Library:
    energy = np.arange(200) * 0.25
    peaks = np.stack([np.exp(-0.5 * ((energy - c) / 2.0) ** 2) for c in (10.0, 20.0, 30.0, 40.0)])
    return Library(peaks, energy, np.array(["a", "b", "c", "c"]), "peaks")


PLAIN = NuisanceConfig(n_augment=100, scale_sd=0.0, shift_ev=0.0, broaden_ev=0.0, background_tilt=0.0)


def test_mixed_pixels_are_labelled_by_their_dominant_fingerprint() -> None:
    lib = _peaks()
    peaks = lib.spectra
    mixing = dataclasses.replace(PLAIN, mix_share=0.5, mix_min=0.6, mix_label="dominant")
    out = augment_library(lib, mixing, np.random.default_rng(0))
    copies, labels = out.spectra[4:], out.labels[4:]
    own = np.repeat(peaks, 100, axis=0)
    mixed = np.abs(copies - own).max(1) > 1e-9
    # Half the copies are drawn for mixing, those paired with their own class stay pure: measured 0.30.
    assert 0.25 < mixed.mean() < 0.45
    # The own fingerprint keeps the larger weight (>= 0.6): its peak is the highest of the mixture.
    height = copies[mixed][:, [40, 80, 120, 160]]
    assert (height.argmax(1) == np.repeat(np.arange(4), 100)[mixed]).all()
    assert height.max(1).min() >= 0.6 - 1e-9
    assert (labels == np.repeat(lib.labels, 100)).all()


def test_sampled_labels_follow_the_mixing_weight() -> None:
    """Known answer: with w uniform in [0.6, 1], a mixed copy carries the minor fingerprint's label
    with probability E[1 - w] = 0.2; pure copies keep their own; the spectra equal the dominant run's."""
    lib = _peaks()
    mixing = dataclasses.replace(PLAIN, n_augment=2000, mix_share=1.0, mix_min=0.6)
    sampled = augment_library(lib, dataclasses.replace(mixing, mix_label="sampled"), np.random.default_rng(1))
    dominant = augment_library(
        lib, dataclasses.replace(mixing, mix_label="dominant"), np.random.default_rng(1)
    )
    np.testing.assert_array_equal(sampled.spectra, dominant.spectra)
    own = np.repeat(lib.labels, 2000)
    mixed = np.abs(sampled.spectra[4:] - np.repeat(lib.spectra, 2000, axis=0)).max(1) > 1e-9
    flipped = sampled.labels[4:] != own
    assert not flipped[~mixed].any()
    assert abs(flipped[mixed].mean() - 0.2) < 0.015  # 5,000+ mixed copies: sd of the share ~0.006
    assert (dominant.labels[4:] == own).all()


def test_gp_copies_are_distinct_copies_from_their_own_stream() -> None:
    """``samples`` spectra per fingerprint (itself first, then nuisance copies), the same for the
    same seed (fit and update draw them alike), and not the encoders' copies of that seed."""
    lib, nuisance = fingerprint_library(), NuisanceConfig()
    copies = gp_copies(lib, nuisance, 100, seed=3)
    assert copies.spectra.shape == (12 * 100, 240)
    np.testing.assert_array_equal(copies.spectra[:12], lib.spectra)
    assert np.bincount(copies.class_index).tolist() == [300, 300, 300, 300]  # 3 fingerprints a class
    assert len(np.unique(copies.spectra[12:].round(12), axis=0)) == 12 * 99  # no copy drawn twice
    np.testing.assert_array_equal(gp_copies(lib, nuisance, 100, seed=3).spectra, copies.spectra)
    encoders = augment_library(lib, dataclasses.replace(nuisance, n_augment=99), np.random.default_rng(3))
    assert not np.allclose(encoders.spectra[12:], copies.spectra[12:])
    assert gp_copies(lib, nuisance, 1, seed=3) is lib  # one sample: the fingerprints alone
