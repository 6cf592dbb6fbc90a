"""The command line end to end on tiny data, and every bad-input case: one line, file named, exit 1."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from eelsprint import cli
from eelsprint.data.io import read_dataset
from eelsprint.data.simulate import simulate_series

FAST_TOML = "[train]\nepochs = 2\nraw_epochs = 2\ngp_iterations = 30\n[nuisance]\nn_augment = 4\n"


def run_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], *args: str
) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["eelsprint", *args])
    code = 0
    try:
        cli.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("cli")
    s = simulate_series(n_frames=1, shape=(10, 12), seed=5)
    np.savez(root / "scan.npz", x=s.spectra.data[0][..., None], energy=s.spectra.energy)
    np.savez(
        root / "library.npz", spectra=s.library.spectra, energy=s.library.energy, labels=s.library.labels
    )
    (root / "fast.toml").write_text(FAST_TOML)
    return {
        "scan": root / "scan.npz",
        "library": root / "library.npz",
        "config": root / "fast.toml",
        "root": root,
    }


@pytest.fixture(scope="module")
def model_dir(files: dict[str, Path]) -> Path:
    out = files["root"] / "model"
    args = [
        "fit",
        str(files["scan"]),
        "--library",
        str(files["library"]),
        "--out",
        str(out),
        "--config",
        str(files["config"]),
        "--seed",
        "1",
    ]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(sys, "argv", ["eelsprint", *args])
        with pytest.raises(SystemExit) as exc:
            cli.main()
    assert exc.value.code in (0, None)
    return out


def test_fit_then_classify_writes_one_netcdf_per_input(
    model_dir: Path,
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    meta = json.loads((model_dir / "model.json").read_text())
    assert meta["config"]["train"]["epochs"] == 2 and meta["config"]["train"]["seed"] == 1
    assert meta["classes"] == ["F50", "F25", "F12.5", "F0"]
    out = files["root"] / "results"
    code, stdout, _ = run_cli(
        monkeypatch, capsys, "classify", str(files["scan"]), "--model", str(model_dir), "--out", str(out)
    )
    assert code == 0
    assert "120 spectra" in stdout
    ds = read_dataset(out / "scan.nc")
    assert ds["proba"].dims == ("y", "x", "class")
    assert ds["proba"].shape == (10, 12, 4)
    np.testing.assert_allclose(ds["proba"].sum("class"), 1.0, atol=1e-5)
    assert not list(out.glob(".*tmp*"))


def test_help_on_every_command(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    for command in ("demo", "fit", "classify"):
        code, out, _ = run_cli(monkeypatch, capsys, command, "--help")
        assert code == 0 and "Usage" in out, command


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("missing", "absent.npz: file not found"),
        ("corrupt", "broken.hspy: cannot read file"),
        ("nan", "nan.npz: 1 non-finite value(s) (NaN/inf)"),
        ("no_energy_axis", "noaxis.hspy: has no energy axis in eV"),
    ],
)
def test_bad_data_gets_one_line(
    case: str,
    match: str,
    model_dir: Path,
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = files["root"]
    s = simulate_series(n_frames=1, shape=(2, 3), seed=0).spectra
    if case == "missing":
        path = root / "absent.npz"
    elif case == "corrupt":
        path = root / "broken.hspy"
        path.write_bytes(b"this is not HDF5")
    elif case == "nan":
        path = root / "nan.npz"
        x = s.data.copy()
        x[0, 1, 2, 7] = np.nan
        np.savez(path, x=x, energy=s.energy)
    else:
        import hyperspy.api as hs

        path = root / "noaxis.hspy"
        hs.signals.Signal1D(s.data[0]).save(path, overwrite=True)
    code, _, err = run_cli(
        monkeypatch, capsys, "classify", str(path), "--model", str(model_dir), "--out", str(root / "bad-out")
    )
    assert code == 1
    assert err.count("\n") == 1 and err.startswith("error: ")
    assert match in err
    assert not (root / "bad-out" / f"{path.stem}.nc").exists()


@pytest.mark.parametrize(
    ("case", "match"),
    [
        ("one_class", "library has only one class 'F50'"),
        ("nan_library", "non-finite value(s) (NaN/inf)"),
        ("no_overlap", "does not overlap the data's 677-736.75 eV"),
        ("window", "window 100-200 eV is outside the data"),
    ],
)
def test_bad_library_or_config_fails_fit(
    case: str,
    match: str,
    files: dict[str, Path],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = files["root"]
    s = simulate_series(n_frames=1, shape=(2, 3), seed=0)
    lib = {"spectra": s.library.spectra, "energy": s.library.energy, "labels": s.library.labels}
    config = files["config"]
    if case == "one_class":
        lib["labels"] = np.full(12, "F50")
    elif case == "nan_library":
        lib["spectra"] = lib["spectra"].copy()
        lib["spectra"][3, 3] = np.inf
    elif case == "no_overlap":
        lib["energy"] = lib["energy"] + 500
    else:
        config = root / "window.toml"
        config.write_text(FAST_TOML + "[preprocess]\nwindow = [100.0, 200.0]\n")
    np.savez(root / f"{case}.npz", **lib)
    out = root / f"model-{case}"
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "fit",
        str(files["scan"]),
        "--library",
        str(root / f"{case}.npz"),
        "--out",
        str(out),
        "--config",
        str(config),
    )
    assert code == 1
    assert err.count("\n") == 1 and match in err, err
    assert not out.exists()


@pytest.mark.parametrize("case", ["tampered", "truncated", "half_written", "other_version"])
def test_bad_model_directory_is_refused(
    case: str,
    model_dir: Path,
    files: dict[str, Path],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    import shutil

    bad = tmp_path / "model"
    shutil.copytree(model_dir, bad)
    weights = bad / "weights.safetensors"
    if case == "tampered":
        data = bytearray(weights.read_bytes())
        data[len(data) // 2] ^= 0xFF
        weights.write_bytes(bytes(data))
        match = "checksum"
    elif case == "truncated":
        weights.write_bytes(weights.read_bytes()[:100])
        match = "weights.safetensors"
    elif case == "half_written":
        (bad / "manifest.json").unlink()
        match = "manifest"
    else:
        for name in ("model.json", "manifest.json"):
            meta = json.loads((bad / name).read_text())
            meta["format_version"] = 999
            (bad / name).write_text(json.dumps(meta))
        match = "format 999"
    code, _, err = run_cli(
        monkeypatch,
        capsys,
        "classify",
        str(files["scan"]),
        "--model",
        str(bad),
        "--out",
        str(tmp_path / "out"),
    )
    assert code == 1 and err.count("\n") == 1
    assert str(bad) in err and match in err, err


def test_debug_shows_the_traceback(files: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    from eelsprint.exceptions import ModelFileError

    monkeypatch.setattr(
        sys,
        "argv",
        [
            "eelsprint",
            "--debug",
            "classify",
            str(files["root"] / "absent.npz"),
            "--model",
            "nowhere",
            "--out",
            "x",
        ],
    )
    with pytest.raises(ModelFileError, match="nowhere"):
        cli.main()
