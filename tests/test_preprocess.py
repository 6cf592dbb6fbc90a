from pathlib import Path

import numpy as np
import pytest

from eelsprint.config import PreprocessConfig
from eelsprint.data.io import read_spectra
from eelsprint.data.preprocess import (
    align,
    crop,
    library_on_axis,
    normalise_array,
    pca_denoise,
    preprocess,
    rebin,
    resample,
    shift_spectra,
    subtract_power_law,
)
from eelsprint.data.spectra import Library, Spectra
from eelsprint.exceptions import InputDataError

ENERGY = np.arange(400) * 0.25 + 600.0


def gaussian(centre: float, width: float = 1.0) -> np.ndarray:
    return np.exp(-0.5 * ((ENERGY - centre) / width) ** 2)


def test_crop_and_window_outside_data() -> None:
    s = Spectra(np.ones((3, 400)), ENERGY, "scan.hspy")
    out = crop(s, (620.0, 650.0))
    assert out.energy[0] == pytest.approx(620.0) and out.energy[-1] == pytest.approx(650.0)
    assert out.data.shape == (3, 121)
    with pytest.raises(InputDataError, match=r"scan.hspy: window 800-900 eV is outside the data"):
        crop(s, (800.0, 900.0))


def test_rebin_sums_channels_and_averages_energy() -> None:
    s = Spectra(np.arange(8.0)[None].repeat(2, 0), np.arange(8.0))
    out = rebin(s, 3)
    np.testing.assert_allclose(out.data[0], [3.0, 12.0])
    np.testing.assert_allclose(out.energy, [1.0, 4.0])


def test_shift_moves_peak_by_requested_amount() -> None:
    data = np.stack([gaussian(650.0), gaussian(650.0)])
    shifted = shift_spectra(data, ENERGY, np.array([1.0, -0.5]))
    centroid = (shifted * ENERGY).sum(1) / shifted.sum(1)
    np.testing.assert_allclose(centroid, [651.0, 649.5], atol=0.01)


def test_align_puts_peaks_on_target_to_a_tenth_of_a_channel() -> None:
    centres = np.array([[648.6, 650.3], [651.1, 649.95]])
    data = np.stack([[gaussian(c) for c in row] for row in centres])
    out = align(Spectra(data, ENERGY), (645.0, 655.0), target=650.0)
    flat = out.flat()
    peak = ENERGY[flat.argmax(1)]
    np.testing.assert_allclose(peak, 650.0, atol=0.25)
    centroid = (flat * ENERGY).sum(1) / flat.sum(1)
    np.testing.assert_allclose(centroid, 650.0, atol=0.025)


def test_power_law_background_is_removed() -> None:
    rng = np.random.default_rng(0)
    amp = rng.uniform(1e6, 5e6, (5, 1))
    r = rng.uniform(2.5, 3.5, (5, 1))
    edge = 50.0 * (ENERGY > 660) * np.exp(-(ENERGY - 660) / 30)
    data = amp * ENERGY ** (-r) * 600.0**3 / 1e6 + edge
    out = subtract_power_law(Spectra(data, ENERGY), (605.0, 655.0))
    np.testing.assert_allclose(out.data, np.broadcast_to(edge, data.shape), atol=1e-6 * data.max())


def test_background_window_outside_data() -> None:
    with pytest.raises(InputDataError, match="background window"):
        subtract_power_law(Spectra(np.ones((2, 400)), ENERGY, "x.dm4"), (100.0, 200.0))


def test_normalise_area_and_edge() -> None:
    data = np.stack([2.0 * gaussian(650.0), 5.0 * gaussian(650.0)])
    area = normalise_array(data, ENERGY, "area", None)
    np.testing.assert_allclose(np.trapezoid(area, ENERGY, axis=-1), 1.0, rtol=1e-9)
    edge = normalise_array(data, ENERGY, "edge", (645.0, 655.0))
    np.testing.assert_allclose(area[0], area[1], atol=1e-12)
    np.testing.assert_allclose(edge[0], edge[1])


def test_default_config_changes_nothing() -> None:
    s = Spectra(np.random.default_rng(1).normal(size=(4, 400)), ENERGY)
    assert preprocess(s, PreprocessConfig()) is s


def test_full_chain_runs_vectorised() -> None:
    cfg = PreprocessConfig(window=(605.0, 690.0), rebin=2, background_window=(605.0, 630.0), normalise="area")
    data = 1e3 * (ENERGY / 600.0) ** -3 + 20 * gaussian(660.0, 3.0)
    out = preprocess(Spectra(np.tile(data, (2, 3, 1)), ENERGY), cfg)
    assert out.data.shape == (2, 3, 170)
    np.testing.assert_allclose(np.trapezoid(out.data, out.energy, axis=-1), 1.0, rtol=1e-9)


def test_pca_denoise_reduces_noise() -> None:
    rng = np.random.default_rng(0)
    clean = rng.uniform(0.5, 1.5, (500, 1)) * gaussian(650.0, 3.0) + rng.uniform(0, 1, (500, 1)) * gaussian(
        670.0, 2.0
    )
    noisy = clean + rng.normal(0, 0.2, clean.shape)
    denoised = pca_denoise(noisy, 2)
    err_before = np.sqrt(((noisy - clean) ** 2).mean())
    err_after = np.sqrt(((denoised - clean) ** 2).mean())
    assert err_after < 0.15 * err_before


def test_library_is_interpolated_on_overlap_only() -> None:
    lib_energy = np.arange(100) * 0.5 + 640.0  # 640 .. 689.5
    lib = Library(
        np.stack([np.sin(lib_energy), np.cos(lib_energy)]), lib_energy, np.array(["a", "b"]), "lib.csv"
    )
    out = library_on_axis(lib, ENERGY, PreprocessConfig())
    assert out.energy[0] == pytest.approx(640.0) and out.energy[-1] == pytest.approx(689.5)
    np.testing.assert_allclose(out.spectra[0], np.interp(out.energy, lib_energy, np.sin(lib_energy)))
    far = Library(lib.spectra, lib_energy + 1000, lib.labels, "lib.csv")
    with pytest.raises(InputDataError, match=r"lib.csv: library energy axis .* does not overlap"):
        library_on_axis(far, ENERGY, PreprocessConfig())


def test_resample_refuses_a_model_axis_outside_the_data() -> None:
    s = Spectra(np.tile(gaussian(650.0), (2, 1)), ENERGY, "scan.msa")
    fine = resample(s, ENERGY[10:50] + 0.1)
    np.testing.assert_allclose(
        fine.data[0], np.interp(ENERGY[10:50] + 0.1, ENERGY, gaussian(650.0)), atol=1e-12
    )
    with pytest.raises(InputDataError, match="scan.msa: data cover"):
        resample(s, ENERGY + 200)


def test_background_window_may_lie_outside_the_crop_window() -> None:
    """The power law is fitted before cropping: an EELS pre-edge window below the edge window."""
    edge = 20 * gaussian(660.0, 3.0)
    data = np.tile(1e3 * (ENERGY / 600.0) ** -3 + edge, (3, 1))
    cfg = PreprocessConfig(window=(650.0, 690.0), background_window=(605.0, 640.0))
    out = preprocess(Spectra(data, ENERGY), cfg)
    assert out.energy[0] >= 650.0
    keep = (ENERGY >= 650.0) & (ENERGY <= 690.0)
    np.testing.assert_allclose(out.data, np.broadcast_to(edge[keep], out.data.shape), atol=1e-6 * data.max())


SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"
LSMO = SHARED / "lsmo" / "LSMO_linescan.hspy"
CU = SHARED / "cu_l23"


@pytest.mark.skipif(not LSMO.is_file(), reason="shared LSMO line scan not found")
def test_lsmo_pre_edge_window_below_the_o_k_window() -> None:
    """LSMO O K: background on 490-520 eV, cropped to 520-570 eV (refused before 0.3)."""
    scan = read_spectra(LSMO)
    inside = preprocess(scan, PreprocessConfig(window=(490.0, 570.0), background_window=(490.0, 520.0)))
    outside = preprocess(scan, PreprocessConfig(window=(520.0, 570.0), background_window=(490.0, 520.0)))
    assert outside.energy[0] == pytest.approx(520.0) and outside.data.shape == (40, 101)
    np.testing.assert_allclose(outside.data, inside.data[:, inside.energy >= 520.0], rtol=1e-12)
    pre_edge = inside.data[:, inside.energy < 520.0].mean()
    # The pre-edge is flat after subtraction: measured mean 0.01 % of the edge's maximum.
    assert abs(pre_edge) < 0.005 * outside.data.max()


@pytest.mark.skipif(not LSMO.is_file(), reason="shared LSMO line scan not found")
def test_measured_library_from_raw_pixels_is_preprocessed_like_the_data() -> None:
    """Library = the raw means of the line scan's two ends: with [library] measured it matches the data."""
    scan = read_spectra(LSMO)
    cfg = PreprocessConfig(window=(490.0, 570.0), background_window=(490.0, 520.0), normalise="area")
    data = preprocess(scan, cfg)
    raw_ends = np.stack([scan.data[:5].mean(0), scan.data[-5:].mean(0)])
    lib = Library(raw_ends, scan.energy, np.array(["start", "end"]), "lsmo_ends.csv")
    measured = library_on_axis(lib, data.energy, cfg, measured=True)
    expected = np.stack([data.data[:5].mean(0), data.data[-5:].mean(0)])
    # Background fit of a mean vs mean of fits: measured max difference 0.09 % of the peak.
    np.testing.assert_allclose(measured.spectra, expected, atol=0.005 * expected.max())
    theory = library_on_axis(lib, data.energy, cfg)  # default: no background subtraction
    assert np.abs(theory.spectra - expected).max() > 0.2 * expected.max()  # measured 54 %


@pytest.mark.skipif(not CU.is_dir(), reason="shared Cu L2,3 references not found")
def test_measured_cu_references_lose_their_power_law_background() -> None:
    """Cu L2,3 standards with a power-law background added, as measured: [library] measured removes it."""
    parts = [read_spectra(CU / f"{name}.dm4") for name in ("Cu_metal", "Cu2O", "CuO")]
    energy = np.arange(910.0, 977.0, 0.1)
    clean = np.stack([np.interp(energy, p.energy, p.data) for p in parts])
    background = 4e3 * (energy / 910.0) ** -3.5
    lib = Library(clean + background, energy, np.array(["Cu", "Cu2O", "CuO"]), "cu_refs.csv")
    cfg = PreprocessConfig(window=(925.0, 975.0), background_window=(910.0, 925.0))
    axis = energy[(energy >= 925.0) & (energy <= 975.0)]
    out = library_on_axis(lib, axis, cfg, measured=True)
    truth = clean[:, (energy >= 925.0) & (energy <= 975.0)]
    # Residual background left by the fit, relative to the largest L3 peak: measured 4.4 % (Cu metal,
    # whose own pre-edge dips below zero), 0.8 % (CuO); without measured = true: 56 %.
    assert np.abs(out.spectra - truth).max() < 0.06 * truth.max()
    assert np.abs(library_on_axis(lib, axis, cfg).spectra - truth).max() > 0.3 * truth.max()
