import numpy as np

from eelsprint.data.simulate import COMPOSITIONS, ENERGY, edge_shape, fingerprint_library, simulate_series


def test_shapes_and_determinism() -> None:
    a = simulate_series(n_frames=2, shape=(8, 10), seed=3)
    b = simulate_series(n_frames=2, shape=(8, 10), seed=3)
    assert a.spectra.data.shape == (2, 8, 10, 240)
    assert a.labels.shape == a.mixed.shape == (2, 8, 10)
    np.testing.assert_array_equal(a.spectra.data, b.spectra.data)
    assert not np.array_equal(a.spectra.data, simulate_series(n_frames=2, shape=(8, 10), seed=4).spectra.data)
    np.testing.assert_allclose(a.spectra.energy[[0, -1]], [677.0, 736.75])


def test_fluorine_leaves_as_temperature_rises() -> None:
    s = simulate_series(n_frames=6, seed=0)
    f50 = (s.labels == 0).reshape(6, -1).mean(1)
    f0 = (s.labels == 3).reshape(6, -1).mean(1)
    assert f50[0] > 0.4 and f50[-1] < 0.05
    assert f0[0] < 0.05 and f0[-1] > 0.5
    assert np.all(np.diff(f0) >= -0.02)


def test_nuisance_is_present() -> None:
    s = simulate_series(n_frames=3, seed=0)
    outliers = (s.labels < 0).mean()
    assert 0.02 < outliers < 0.05
    assert 0.03 < s.mixed.mean() < 0.3
    # residual noise: counting noise at dose 60 and background 1.5 gives sd ~ sqrt(1.5/60) ~ 0.16 at 677 eV
    residual = s.spectra.data - s.clean
    assert 0.1 < residual[..., :10].std() < 0.25
    # noise falls with energy like the power-law background
    assert residual[..., -10:].std() < residual[..., :10].std()


def test_classes_differ_mostly_in_intensity() -> None:
    lib = fingerprint_library()
    assert list(lib.classes) == list(COMPOSITIONS)
    assert lib.spectra.shape == (12, 240)
    assert np.all(lib.spectra[lib.labels == "F0"] == 0)
    peaks = ENERGY[lib.spectra[lib.labels != "F0"].argmax(1)]
    assert np.all((peaks >= 697.9) & (peaks <= 698.6))
    ratio = edge_shape(ENERGY, 1.0, 698.0, 0.3).max() / edge_shape(ENERGY, 0.25, 698.5, 0.45).max()
    assert 3.5 < ratio < 4.5
