"""Tests of eelsprint.io: readers, validation, atomic writes and NetCDF."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import xarray as xr

from eelsprint.data import atomic, io
from eelsprint.exceptions import InputDataError

ENERGY = 400.0 + 0.5 * np.arange(50)


def _hs() -> Any:
    with io._quiet():
        import hyperspy.api as hs
    return hs


def _signal(data: np.ndarray, units: str = "eV", offset: float = 400.0, scale: float = 0.5) -> Any:
    signal = _hs().signals.Signal1D(data)
    axis = signal.axes_manager.signal_axes[0]
    axis.offset, axis.scale, axis.units = offset, scale, units
    return signal


def _save(signal: Any, path: Path) -> Path:
    with io._quiet():
        signal.save(path)
    return path


def _data(*shape: int) -> np.ndarray:
    return np.random.default_rng(0).random((*shape, ENERGY.size))


@pytest.mark.parametrize(
    ("shape", "stored"), [((7,), (7, 50)), ((3, 4), (3, 4, 50)), ((), (50,)), ((6,), (6, 50, 1))]
)
def test_npz_round_trip(tmp_path: Path, shape: tuple[int, ...], stored: tuple[int, ...]) -> None:
    x = _data(*shape)
    np.savez(tmp_path / "s.npz", x=x.reshape(stored), energy=ENERGY)
    spectra = io.read_spectra(tmp_path / "s.npz")
    assert spectra.nav_shape == shape and spectra.n_channels == ENERGY.size
    np.testing.assert_array_equal(spectra.data, x)
    np.testing.assert_array_equal(spectra.energy, ENERGY)
    assert spectra.flat().shape == (int(np.prod(shape)), ENERGY.size)
    assert spectra.source.endswith("s.npz")


EV, KEV = ("eV", 400, 0.5), ("keV", 0.4, 0.0005)  # the same axis; keV is converted to eV


@pytest.mark.parametrize(  # MSA keeps 6 decimals
    ("name", "shape", "atol", "axis"),
    [("s.hspy", (5,), 0, EV), ("s.hspy", (3, 4), 0, EV), ("s.msa", (), 1e-6, EV), ("k.hspy", (2,), 0, KEV)],
)
def test_hyperspy_round_trip(tmp_path: Path, name: str, shape: tuple, atol: float, axis: Any) -> None:
    x = _data(*shape).astype(np.float32)
    spectra = io.read_spectra(_save(_signal(x, *axis), tmp_path / name))
    assert spectra.nav_shape == shape and spectra.data.dtype == np.float64
    np.testing.assert_allclose(spectra.data, x, rtol=0, atol=atol)
    np.testing.assert_allclose(spectra.energy, ENERGY, rtol=0, atol=1e-9)


def test_in_memory_inputs() -> None:
    x = _data(2, 3)
    from_signal = io.as_spectra(_signal(x))
    assert from_signal.nav_shape == (2, 3)
    np.testing.assert_allclose(from_signal.energy, ENERGY, atol=1e-9)
    np.testing.assert_array_equal(from_signal.data, x)
    assert io.as_spectra(from_signal, ENERGY) is from_signal
    np.testing.assert_array_equal(io.as_spectra(x, ENERGY).data, x)
    with pytest.raises(InputDataError, match="no energy axis in eV"):
        io.spectra_from_signal(_signal(x, units="nm"))
    with pytest.raises(InputDataError, match=r"shape \(2, 3, 50\) without its energy axis"):
        io.as_spectra(x)
    with pytest.raises(InputDataError, match="disagrees"):
        io.as_spectra(from_signal, ENERGY + 1)
    with pytest.raises(InputDataError, match=r"^my scan: 1 non-finite"):
        io.spectra_from_array(np.array([[1.0, np.inf, 2.0]]), [1.0, 2.0, 3.0], source="my scan")


def _write_garbage(path: Path) -> Path:
    path.write_bytes(b"this is not a real data file\x00\x01" * 10)
    return path


def _write_nan(path: Path) -> Path:
    x = _data(4)
    x[2, 17], x[3, 1] = np.nan, np.inf
    return _save(_signal(x), path)


def _write_nonuniform(path: Path) -> Path:
    signal = _signal(_data(2))
    with io._quiet():
        signal.axes_manager.signal_axes[0].convert_to_non_uniform_axis()
    return _save(signal, path)


@pytest.mark.parametrize(
    ("name", "make", "message"),
    [
        ("absent.dm4", None, "file not found"),
        ("absent.npz", None, "file not found"),
        ("corrupt.dm4", _write_garbage, "cannot read file"),
        ("corrupt.hspy", _write_garbage, "cannot read file"),
        ("corrupt.npz", _write_garbage, "cannot read .npz"),
        ("spectra.txt", _write_garbage, "unsupported file type"),
        ("nan.hspy", _write_nan, r"2 non-finite value\(s\).*first at index \(2, 17\)"),
        ("image.hspy", lambda p: _save(_hs().signals.Signal2D(np.zeros((8, 8))), p), "signal dimension 2"),
        ("nonuniform.hspy", _write_nonuniform, "not uniform"),
        ("nounits.hspy", lambda p: _save(_signal(_data(2), units=""), p), "no energy axis in eV"),
        ("nokey.npz", lambda p: np.savez(p, x=_data(3)), r"missing array\(s\) \['energy'\]"),
        ("down.npz", lambda p: np.savez(p, x=_data(3), energy=ENERGY[::-1]), "strictly increasing"),
        ("short.npz", lambda p: np.savez(p, x=_data(3), energy=ENERGY[1:]), "49 values but .* 50 channels"),
        ("nan.npz", lambda p: np.savez(p, x=_data(3) * np.nan, energy=ENERGY), r"150 non-finite.*\(0, 0\)"),
        ("text.npz", lambda p: np.savez(p, x=np.array(["a"] * 50), energy=ENERGY), "must be real numbers"),
    ],
)
def test_bad_spectra_files(tmp_path: Path, name: str, make: Any, message: str) -> None:
    path = tmp_path / name
    if make is not None:
        make(path)
    with pytest.raises(InputDataError, match=message) as info:
        io.read_spectra(path)
    assert name in str(info.value) and "\n" not in str(info.value)


def test_file_with_several_signals_is_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _save(_signal(_data(2)), tmp_path / "multi.hspy")
    loaded = io._hyperspy_load(path)
    monkeypatch.setattr(_hs(), "load", lambda *args, **kwargs: [loaded, loaded])
    with pytest.raises(InputDataError, match=r"multi.hspy: file holds 2 signals; expected exactly one"):
        io.read_spectra(path)


LABELS = ["F50", "F50", "F25", "F0"]


LIBRARY = np.random.default_rng(1).random((4, ENERGY.size)) * [[1], [1], [1], [0]]  # F0 is all zeros


@pytest.mark.parametrize("name", ["lib.npz", "lib.csv"])
def test_library_with_shared_labels(tmp_path: Path, name: str) -> None:
    spectra, energy = LIBRARY, ENERGY
    if name.endswith(".npz"):
        np.savez(tmp_path / name, spectra=spectra, energy=energy, labels=np.array(LABELS))
    else:  # duplicate header names: several spectra per class
        table, header = np.column_stack([energy, spectra.T]), "energy," + ",".join(LABELS)
        np.savetxt(tmp_path / name, table, fmt="%.17g", delimiter=",", header=header, comments="")
    library = io.read_library(tmp_path / name)
    np.testing.assert_array_equal(library.spectra, spectra)
    np.testing.assert_array_equal(library.energy, energy)
    assert library.labels.tolist() == LABELS and library.classes.tolist() == ["F50", "F25", "F0"]
    assert library.class_index.tolist() == [0, 0, 1, 2] and not library.spectra[3].any()


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("e,F50,F50\n1,1,2\n2,3,4\n", "only one class 'F50'; need at least two"),
        ("e,F50,F25\n1,1,2\n2,x,4\n", "line 3, column 2: 'x' is not a number"),
        ("e,F50,F25\n1,1,2\n2,3\n", "line 3 has 2 columns"),
        ("e,F50,F25\n1,1,2\n2,3,nan\n", "non-finite"),
        ("e,F50,F25\n", "at least two energy rows"),
    ],
)
def test_bad_library_csv(tmp_path: Path, text: str, message: str) -> None:
    (tmp_path / "lib.csv").write_text(text)
    with pytest.raises(InputDataError, match=message) as info:
        io.read_library(tmp_path / "lib.csv")
    assert "lib.csv" in str(info.value)


def test_library_errors(tmp_path: Path) -> None:
    spectra, energy = LIBRARY, ENERGY
    with pytest.raises(InputDataError, match=r"lib: need one text label per spectrum \(4\)"):
        io.library_from_arrays(spectra, energy, LABELS[:3], source="lib")
    with pytest.raises(InputDataError, match="lib: energy axis has 49 values"):
        io.library_from_arrays(spectra, energy[1:], LABELS, source="lib")
    with pytest.raises(InputDataError, match=r"missing.npz: file not found"):
        io.read_library(tmp_path / "missing.npz")
    with pytest.raises(InputDataError, match=r"lib.tsv: unsupported library file type"):
        io.read_library(_write_garbage(tmp_path / "lib.tsv"))
    np.savez(tmp_path / "nolabels.npz", spectra=np.ones((2, 3)), energy=np.arange(3.0))
    with pytest.raises(InputDataError, match=r"nolabels.npz: missing array\(s\) \['labels'\]"):
        io.read_library(tmp_path / "nolabels.npz")


def test_mxene_release_format(tmp_path: Path) -> None:
    spectra, energy = LIBRARY, ENERGY
    np.save(tmp_path / "MXene_DFT_Data.npy", spectra[:, :, None])
    np.save(tmp_path / "MXene_DFT_Labels.npy", np.array([0, 1, 2, 3]))
    np.save(tmp_path / "MXene_EELS_axis.npy", energy)
    library = io.read_library(tmp_path)
    assert library.classes.tolist() == ["F50", "F25", "F12.5", "F0"]
    np.testing.assert_array_equal(library.spectra, spectra)
    (tmp_path / "MXene_EELS_axis.npy").unlink()
    with pytest.raises(InputDataError, match=r"MXene_EELS_axis.npy: file not found"):
        io.read_mxene_library(tmp_path)


def test_atomic_write_replaces_only_on_success(tmp_path: Path) -> None:
    with pytest.raises(ValueError), atomic.atomic_write(tmp_path / "out" / "new.nc") as tmp:
        tmp.write_bytes(b"partial")
        raise ValueError
    assert list((tmp_path / "out").iterdir()) == []
    target = tmp_path / "out" / "result.txt"
    with atomic.atomic_write(target) as tmp:
        assert tmp.parent == target.parent and tmp.name.startswith(".result.txt.tmp-")
        tmp.write_text("first")
    assert target.read_text() == "first"
    with pytest.raises(RuntimeError, match="boom"), atomic.atomic_write(target) as tmp:
        tmp.write_text("second")
        raise RuntimeError("boom")
    assert target.read_text() == "first"
    assert sorted(p.name for p in target.parent.iterdir()) == ["result.txt"]


def test_write_json_is_atomic(tmp_path: Path) -> None:
    target = tmp_path / "results" / "r.json"
    atomic.write_json(target, {"a": 1.5, "b": [1, 2]})
    assert target.read_text(encoding="utf-8") == '{\n  "a": 1.5,\n  "b": [\n    1,\n    2\n  ]\n}\n'
    with pytest.raises(ValueError, match="Out of range float"):
        atomic.write_json(target, {"a": float("nan")}, allow_nan=False)
    assert json.loads(target.read_text()) == {"a": 1.5, "b": [1, 2]}
    assert [p.name for p in target.parent.iterdir()] == ["r.json"]


def test_atomic_directory(tmp_path: Path) -> None:
    target = tmp_path / "model"
    for content in ("one", "two"):
        with atomic.atomic_directory(target) as tmp:
            (tmp / "file.txt").write_text(content)
        assert (target / "file.txt").read_text() == content
    with pytest.raises(KeyError), atomic.atomic_directory(target) as tmp:
        (tmp / "file.txt").write_text("three")
        raise KeyError
    assert (target / "file.txt").read_text() == "two"
    assert [p.name for p in tmp_path.iterdir()] == ["model"]


def test_dataset_round_trip_and_errors(tmp_path: Path) -> None:
    ds = xr.Dataset({"p": (("y", "x"), np.arange(6.0).reshape(2, 3))}, attrs={"model": "m1"})
    io.write_dataset(ds, tmp_path / "r.nc")
    back = io.read_dataset(tmp_path / "r.nc")
    xr.testing.assert_identical(back, ds)
    (tmp_path / "r.nc").unlink()  # the data must already be in memory
    np.testing.assert_array_equal(back["p"].values, ds["p"].values)
    with pytest.raises(InputDataError, match=r"r.nc: file not found"):
        io.read_dataset(tmp_path / "r.nc")
    with pytest.raises(InputDataError, match=r"bad.nc: cannot read NetCDF"):
        io.read_dataset(_write_garbage(tmp_path / "bad.nc"))
