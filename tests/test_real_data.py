"""Every measured file under ../shared/data/real loads through read_spectra; the MXene library loads."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eelsprint.data.io import read_mxene_library, read_spectra

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
if not DATA.is_dir():
    pytest.skip(f"shared data not found at {DATA}", allow_module_level=True)

FILES = sorted(p for p in DATA.glob("real/*/*") if p.is_file() and p.suffix != ".md")

# name -> (navigation shape in numpy order, channels, first energy in eV)
EXPECTED = {
    "Cr_L_cl.hspy": ((), 400, 560.0),
    "Cr_L_ll.hspy": ((), 2035, -20.0),
    "Cu2O.dm4": ((), 2270, 909.54),
    "CuO.dm4": ((), 2761, 904.81),
    "Cu_metal.dm4": ((), 2620, 899.04),
    "LSMO_STO_linescan.hspy": ((10,), 512, 395.0),
    "LSMO_STO_linescan_low_loss.hspy": ((10,), 512, -50.0),
    "LSMO_linescan.hspy": ((40,), 586, 428.5),
    "LSMO_linescan_low_loss.hspy": ((40,), 1024, -50.0),
    "coreloss_spectrum.msa": ((), 2048, 360.0),
    "lowloss_spectrum.msa": ((), 2048, -40.0),
    "EELS_STO.dm3": ((), 2048, 350.0),
    # HyperSpy reports navigation shape (10, 6) (x, y); its data array is (6, 10, 2048).
    "TiL_SI_high_loss.dm4": ((6, 10), 2048, 435.0),
    "TiL_SI_low_loss.dm4": ((6, 10), 2048, -5.0),
    "EELS_SI.dm4": ((2, 2), 2048, 300.0),
}


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_real_file_loads_with_energy_in_ev(path: Path) -> None:
    spectra = read_spectra(path)
    assert spectra.data.dtype == np.float64 and np.isfinite(spectra.data).all()
    assert np.all(np.diff(spectra.energy) > 0)
    assert spectra.energy.min() > -100 and spectra.energy.max() < 5000
    assert spectra.data.std() > 0
    if path.name in EXPECTED:
        nav_shape, channels, start = EXPECTED[path.name]
        assert spectra.nav_shape == nav_shape
        assert spectra.n_channels == channels
        assert spectra.energy[0] == pytest.approx(start, abs=1e-3)


def test_lsmo_linescan_axis() -> None:
    path = DATA / "real" / "lsmo" / "LSMO_linescan.hspy"
    if not path.is_file():
        pytest.skip(f"{path} not found")
    spectra = read_spectra(path)
    np.testing.assert_allclose(spectra.energy, 428.5 + 0.5 * np.arange(586), atol=1e-9)
    assert spectra.flat().shape == (40, 586)


def test_expected_files_are_present() -> None:
    missing = set(EXPECTED) - {p.name for p in FILES}
    assert not missing, f"expected real data files not found: {sorted(missing)}"


def test_mxene_library() -> None:
    directory = DATA / "mxene_dft"
    if not directory.is_dir():
        pytest.skip(f"{directory} not found")
    library = read_mxene_library(directory)
    assert library.spectra.shape == (12, 240)
    assert library.classes.tolist() == ["F50", "F25", "F12.5", "F0"]
    assert np.bincount(library.class_index).tolist() == [3, 3, 3, 3]
    f0 = library.spectra[library.labels == "F0"]
    assert f0.shape == (3, 240) and not f0.any()
    assert library.spectra[library.labels != "F0"].min(axis=1).max() >= 0
    assert library.spectra[library.labels != "F0"].any(axis=1).all()
    assert library.energy[0] == pytest.approx(677.0) and library.energy[-1] == pytest.approx(736.75)
    np.testing.assert_allclose(np.diff(library.energy), 0.25)
