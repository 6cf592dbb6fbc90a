"""Tests of eelsprint.report.baselines: the reference classifiers of the evaluation report."""

from __future__ import annotations

import numpy as np
import pytest

from eelsprint.data.simulate import SimulatedSeries, fingerprint_library
from eelsprint.inference.metrics import accuracy
from eelsprint.report.baselines import (
    DESCRIPTIONS,
    RatioWindows,
    nearest_fingerprint,
    one_hot,
    pca_gp_proba,
    peak_ratio_proba,
    ratio_windows,
    run_baselines,
)


@pytest.fixture(scope="module")
def baseline_proba(series: SimulatedSeries) -> dict[str, np.ndarray]:
    return run_baselines(series.spectra.flat(), series.library)


def test_one_hot() -> None:
    p = one_hot(np.array([2, 0, 1]), 4)
    assert p.shape == (3, 4)
    np.testing.assert_array_equal(p.argmax(-1), [2, 0, 1])
    np.testing.assert_array_equal(p.sum(-1), 1.0)


def test_nearest_fingerprint_recovers_the_library_itself() -> None:
    library = fingerprint_library()
    np.testing.assert_array_equal(nearest_fingerprint(library.spectra, library), library.class_index)


def test_every_baseline_returns_probabilities(
    series: SimulatedSeries, baseline_proba: dict[str, np.ndarray]
) -> None:
    assert set(baseline_proba) == set(DESCRIPTIONS)
    n = series.labels.size
    for name, proba in baseline_proba.items():
        assert proba.shape == (n, 4), name
        assert (proba >= 0).all(), name
        np.testing.assert_allclose(proba.sum(-1), 1.0, atol=1e-9, err_msg=name)
    # only the GP classifier gives graded probabilities; the others are one-hot
    assert np.isin(baseline_proba["nearest_fingerprint"], (0.0, 1.0)).all()
    assert (baseline_proba["pca_gp"].max(-1) < 0.999).mean() > 0.5


def test_baseline_accuracy_on_the_simulator(
    series: SimulatedSeries, baseline_proba: dict[str, np.ndarray]
) -> None:
    """Seen on this series: 0.964, 0.963, 0.61, 0.971; chance is about 0.25 (4 classes)."""
    y = series.labels.reshape(-1)
    acc = {name: accuracy(p, y) for name, p in baseline_proba.items()}
    assert acc["nearest_fingerprint"] > 0.93
    assert acc["pca_nearest_fingerprint"] > 0.93
    assert acc["pca_gp"] > 0.93
    assert 0.45 < acc["peak_ratio"] < 0.9  # the conventional method: intensity information is lost


def test_ratio_windows_pick_main_peak_and_pre_peak() -> None:
    """The simulated edge has its main peak near 698 eV and the class-dependent pre-peak at 694 eV."""
    windows = ratio_windows(fingerprint_library())
    assert windows.peak[0] < 698.0 < windows.peak[1]
    assert windows.shoulder[0] < 694.0 < windows.shoulder[1]
    assert windows.peak[1] - windows.peak[0] == pytest.approx(2.0)


def test_peak_ratio_classifies_the_clean_library() -> None:
    """Every clean fingerprint (the all-zero F0 ones by their missing edge) gets its own class."""
    library = fingerprint_library()
    proba = peak_ratio_proba(library.spectra, library, n_components=10)
    np.testing.assert_array_equal(proba.argmax(-1), library.class_index)


def test_peak_ratio_accepts_given_windows(series: SimulatedSeries) -> None:
    x = series.spectra.flat()[:200]
    windows = RatioWindows(peak=(697.0, 699.0), shoulder=(693.0, 695.0))
    proba = peak_ratio_proba(x, series.library, windows=windows)
    assert proba.shape == (200, 4)


def test_pca_gp_puts_probabilities_in_library_class_order(series: SimulatedSeries) -> None:
    library = fingerprint_library()
    proba = pca_gp_proba(library.spectra, library, n_components=4)
    assert accuracy(proba, library.class_index) == 1.0
