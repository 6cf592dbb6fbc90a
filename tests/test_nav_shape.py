"""Flat inputs on their scan grid: ``--nav-shape``, an ``.npz``'s ``shape`` array, per-frame reports."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eelsprint.data.io import read_dataset, read_spectra
from eelsprint.data.simulate import SimulatedSeries
from eelsprint.exceptions import InputDataError
from eelsprint.report.build import frames_of
from tests.test_cli import run_cli


@pytest.fixture(scope="module")
def paper_like(series: SimulatedSeries, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The paper's released layout: one flat (13,680, 240, 1) array, here the 3 simulated frames
    of 19 x 30 repeated 8 times (24 frames)."""
    flat = np.tile(series.spectra.flat(), (8, 1))[..., None]
    path = tmp_path_factory.mktemp("flat") / "flat.npz"
    np.savez(path, x=flat, energy=series.spectra.energy)
    return path


def test_read_spectra_takes_a_grid_or_the_npz_shape(series: SimulatedSeries, tmp_path: Path) -> None:
    flat = series.spectra.flat()
    np.savez(tmp_path / "plain.npz", x=flat, energy=series.spectra.energy)
    np.savez(tmp_path / "shaped.npz", x=flat, energy=series.spectra.energy, shape=np.array([3, 19, 30]))
    assert read_spectra(tmp_path / "plain.npz").nav_shape == (1710,)
    shaped = read_spectra(tmp_path / "shaped.npz")
    assert shaped.nav_shape == (3, 19, 30)
    np.testing.assert_array_equal(shaped.data, series.spectra.data)  # the order kept
    assert read_spectra(tmp_path / "shaped.npz", nav_shape=(1710,)).nav_shape == (1710,)  # given wins
    with pytest.raises(InputDataError, match=r"plain.npz: navigation shape 3,19,31 holds 1767 spectra, but"):
        read_spectra(tmp_path / "plain.npz", nav_shape=(3, 19, 31))
    np.savez(tmp_path / "bad.npz", x=flat, energy=series.spectra.energy, shape=np.array([2.5, 4]))
    with pytest.raises(InputDataError, match=r"bad.npz: array 'shape' must be 1-D integers"):
        read_spectra(tmp_path / "bad.npz")


def test_classify_nav_shape_writes_frame_y_x(
    paper_like: Path, fitted_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    """``classify --nav-shape 24,30,19`` on the paper's flat layout (13,680 spectra)."""
    code, _, err = run_cli(
        monkeypatch, capsys, "classify", str(paper_like), "-m", str(fitted_dir), "-o", str(tmp_path),
        "--nav-shape", "24,30,19",
    )  # fmt: skip
    assert code == 0, err
    ds = read_dataset(tmp_path / "flat.nc")
    assert ds["label"].dims == ("frame", "y", "x") and ds["label"].shape == (24, 30, 19)
    assert ds["proba"].dims == ("frame", "y", "x", "class")


def test_bad_nav_shape_is_one_line(paper_like: Path, fitted_dir: Path, monkeypatch, capsys) -> None:
    for grid, message in (
        ("24,30,20", f"{paper_like}: navigation shape 24,30,20 holds 14400 spectra, but there are 13680"),
        ("24,x", "--nav-shape must be positive integers separated by commas (e.g. 24,30,19), got '24,x'"),
    ):
        code, _, err = run_cli(
            monkeypatch, capsys, "classify", str(paper_like), "-m", str(fitted_dir), "-o", "unused",
            "--nav-shape", grid,
        )  # fmt: skip
        assert code == 1 and err.strip().splitlines() == [f"error: {message}"], err


def test_a_flat_series_on_its_grid_is_reported_frame_by_frame(paper_like: Path) -> None:
    """What ``report --nav-shape 24,30,19`` maps: 24 frames of 30 x 19, not one line of pixels."""
    spectra = read_spectra(paper_like, nav_shape=(24, 30, 19))
    frames = frames_of([spectra], ["flat"])
    assert len(frames) == 24 and {f.shape for f in frames} == {(30, 19)}
    assert frames[0].map(np.arange(13680)).shape == (30, 19)
    flat = frames_of([read_spectra(paper_like)], ["flat"])
    assert len(flat) == 1 and flat[0].map(np.arange(13680)).shape == (1, 13680)  # the old one-pixel line


def test_every_command_that_reads_data_takes_nav_shape(monkeypatch, capsys) -> None:
    for command in ("classify", "report", "watch"):
        code, out, _ = run_cli(monkeypatch, capsys, command, "--help")
        assert code == 0 and "--nav-shape" in out, command
