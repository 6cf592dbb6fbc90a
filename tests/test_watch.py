"""``eelsprint watch``: complete files are classified as they appear, bad ones are reported and skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from eelsprint import FingerprintClassifier
from eelsprint.data.io import read_dataset
from eelsprint.data.simulate import SimulatedSeries
from eelsprint.exceptions import InputDataError
from eelsprint.realtime.watch import watch
from tests.test_cli import run_cli


@pytest.fixture()
def folder(series: SimulatedSeries, tmp_path: Path) -> Path:
    """Two frames, a corrupt file, a hidden temporary file and an unrelated file."""
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for i in range(2):
        np.savez(incoming / f"frame{i}.npz", x=series.spectra.data[i], energy=series.spectra.energy)
    (incoming / "corrupt.npz").write_bytes(b"PK\x03\x04 not really a zip archive")
    (incoming / ".frame2.npz.tmp-1234").write_bytes(b"half written")
    (incoming / "notes.txt").write_text("not a spectrum")
    return incoming


def test_watch_once_classifies_complete_files_and_skips_bad_ones(
    fitted_dir: Path, folder: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    out = tmp_path / "out"
    args = ["watch", str(folder), "--model", str(fitted_dir), "--out", str(out), "--once", "--settle", "0.05"]
    code, stdout, stderr = run_cli(monkeypatch, capsys, *args)
    assert code == 0
    assert sorted(p.name for p in out.iterdir()) == ["frame0.nc", "frame1.nc"]
    assert "skipped corrupt.npz: cannot read .npz file" in stderr
    assert "2 file(s) classified, 1 skipped" in stdout
    assert stdout.count("570 spectra classified in") == 2
    ds = read_dataset(out / "frame1.nc")
    assert ds["proba"].shape == (19, 30, 4) and ds.attrs["integration"] == "head"


def test_a_file_still_being_written_waits_until_it_settles(
    fitted: FingerprintClassifier, series: SimulatedSeries, tmp_path: Path
) -> None:
    incoming, out = tmp_path / "in", tmp_path / "out"
    incoming.mkdir()
    growing = incoming / "growing.npz"
    growing.write_bytes(b"PK")  # the writer has only just started
    polls: list[float] = []

    def sleep(seconds: float) -> None:  # the acquisition finishes the file during the first wait
        polls.append(seconds)
        if len(polls) == 1:
            np.savez(growing, x=series.spectra.data[0], energy=series.spectra.energy)

    events = list(watch(incoming, fitted, out, once=True, settle_s=0.0, poll_s=0.01, sleep=sleep))
    assert [(e.path.name, e.status) for e in events] == [("growing.npz", "done")]
    assert events[0].n_spectra == 570 and events[0].latency_ms > 0 and events[0].output == out / "growing.nc"


def test_watch_refuses_a_missing_folder(fitted: FingerprintClassifier, tmp_path: Path) -> None:
    with pytest.raises(InputDataError, match="folder to watch not found"):
        next(watch(tmp_path / "nowhere", fitted, tmp_path / "out", once=True))
