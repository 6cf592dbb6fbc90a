"""The realism generator's truth, and the least-squares (MLLS) and supervised-ceiling baselines."""

from __future__ import annotations

import glob
from pathlib import Path

import numpy as np
import pytest

from eelsprint.data.realism import KINDS, RealismConfig, realistic_series
from eelsprint.data.simulate import fingerprint_library
from eelsprint.data.spectra import Library
from eelsprint.exceptions import ConfigError
from eelsprint.report.baselines import mlls_fit, nearest_fingerprint, supervised_ceiling

CU = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "cu_l23"


def peaks_library() -> Library:
    """Three classes of different shape (two spectra each, differing by 10 % in height)."""
    energy = np.arange(200) * 0.25 + 500.0
    spectra, labels = [], []
    for name, centre in (("a", 515.0), ("b", 522.0), ("c", 530.0)):
        for scale in (0.95, 1.05):
            spectra.append(scale * np.exp(-0.5 * ((energy - centre) / 2.0) ** 2))
            labels.append(name)
    return Library(np.array(spectra), energy, np.array(labels))


def test_truth_is_consistent() -> None:
    cfg = RealismConfig(n_frames=3, shape=(20, 30), ood_fraction=0.06, seed=3)
    series = realistic_series(peaks_library(), cfg)
    n = series.labels.size
    assert series.counts.data.shape == (3, 20, 30, series.counts.energy.size)
    # OOD share and kinds exactly as asked (rounding to whole pixels)
    assert abs((series.labels < 0).mean() - 0.06) < 1.5 / n
    for k in range(len(KINDS)):
        assert abs((series.ood_kind == k).sum() - 0.02 * n) <= 1
    assert np.array_equal(series.labels < 0, series.ood_kind >= 0)
    # mixtures: labelled by the dominant class, weights sum to 1, some mixed pixels
    lib = series.labels >= 0
    w = series.weights[lib]
    assert np.allclose(w.sum(-1), 1.0)
    assert np.array_equal(w.argmax(-1), series.labels[lib])
    mixed = series.mixed[lib]
    assert 0.05 < mixed.mean() < 0.5  # measured 0.13
    assert (w[mixed].max(-1) >= 0.5).all() and (w[mixed].max(-1) < 1.0).all()
    # the background window starts below the library's axis and ends before its edge
    low, high = series.background_window
    assert low < series.library.energy[0] - 20.0  # half the library's 50 eV range is added
    before = series.library.energy <= high
    assert before.any() and series.library.spectra[:, before].max() < 0.03 * series.library.spectra.max()
    assert set(np.unique(series.labels)) == {-1, 0, 1, 2}


def test_seeds_reproducible_and_counts_scale_with_dose() -> None:
    lib = peaks_library()
    a = realistic_series(lib, RealismConfig(n_frames=2, shape=(10, 12), dose=5.0, seed=1))
    b = realistic_series(lib, RealismConfig(n_frames=2, shape=(10, 12), dose=5.0, seed=1))
    c = realistic_series(lib, RealismConfig(n_frames=2, shape=(10, 12), dose=50.0, seed=1))
    d = realistic_series(lib, RealismConfig(n_frames=2, shape=(10, 12), dose=5.0, seed=2))
    assert np.array_equal(a.counts.data, b.counts.data) and np.array_equal(a.weights, b.weights)
    assert not np.array_equal(a.counts.data, d.counts.data)
    assert np.array_equal(a.labels, c.labels)  # same seed: same truth at another dose
    ratio = c.counts.data.sum() / a.counts.data.sum()
    assert abs(ratio - 10.0) < 0.1  # measured 10.000 (Poisson scatter of ~5.6e5 counts)
    assert np.allclose(c.dose / a.dose, 10.0)
    assert np.array_equal(a.counts.data, np.round(a.counts.data))  # integer counts


def test_labels_match_spectra_at_high_dose() -> None:
    """Without background, shift or broadening, the dominant class is the nearest fingerprint."""
    lib = peaks_library()
    cfg = RealismConfig(
        n_frames=2, shape=(16, 20), dose=2000.0, background_ratio=0.0, shift_sd_ev=0.0,
        drift_ev=0.0, broadening_ev=0.0, norm_sd=0.0, beam_drift_sd=0.0, seed=4,
    )  # fmt: skip
    series = realistic_series(lib, cfg)
    x = series.spectra.flat()[:, -lib.n_channels :]
    y = series.labels.reshape(-1)
    pure = (y >= 0) & ~series.mixed.reshape(-1)
    assert (nearest_fingerprint(x[pure], lib) == y[pure]).mean() > 0.99  # measured 1.0
    background = series.ood_kind.reshape(-1) == KINDS.index("background")
    assert np.abs(x[background]).max() < 0.05 * lib.spectra.max()  # no edge at all (measured 0)


def test_config_is_validated() -> None:
    with pytest.raises(ConfigError, match="ood_kinds"):
        RealismConfig(ood_kinds=("alien",))
    with pytest.raises(ConfigError, match="ood_fraction"):
        RealismConfig(ood_fraction=0.7)


def test_mlls_recovers_dominant_class_of_noiseless_mixtures() -> None:
    lib = peaks_library()
    refs = lib.class_means()
    w = np.linspace(0.51, 1.0, 25)
    for a in range(3):
        for b in range(3):
            if a != b:
                x = w[:, None] * refs[a] + (1 - w[:, None]) * refs[b]
                scales = mlls_fit(x, lib)[0]
                assert np.array_equal(scales.argmax(-1), np.full(len(w), a))
                assert np.allclose(scales[:, a], w) and np.allclose(scales[:, b], 1 - w)


@pytest.mark.skipif(not CU.is_dir(), reason="../shared/data/real/cu_l23 not present")
def test_mlls_on_measured_cu_references() -> None:
    from eelsprint.io import read_spectra

    spectra = [read_spectra(p) for p in sorted(glob.glob(str(CU / "*.dm4")))]
    energy = np.arange(915.0, 975.0, 0.25)
    refs = np.stack([np.interp(energy, s.energy, s.data.reshape(-1)) for s in spectra])
    lib = Library(refs, energy, np.array(["Cu2O", "CuO", "Cu"]))
    rng = np.random.default_rng(0)
    w = rng.dirichlet(np.ones(3), 300)
    w = w[np.sort(w, -1)[:, -1] > np.sort(w, -1)[:, -2] + 1e-3]  # a unique dominant class
    assert np.array_equal(mlls_fit(w @ refs, lib)[0].argmax(-1), w.argmax(-1))


def test_supervised_ceiling_learns() -> None:
    series = realistic_series(fingerprint_library(), RealismConfig(n_frames=2, shape=(20, 24), seed=5))
    x = series.spectra.flat()
    y = series.labels.reshape(-1)
    proba, test = supervised_ceiling(x, y, 4, seed=0)
    assert proba.shape == (len(test), 4) and np.allclose(proba.sum(-1), 1.0)
    assert (y[test] >= 0).all() and len(test) == (y >= 0).sum() - (y >= 0).sum() // 2
    assert (proba.argmax(-1) == y[test]).mean() > 0.6  # measured 0.90 (chance 0.25)
