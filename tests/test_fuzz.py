"""Seeded fuzzing of every file a user hands eelsprint: ``.npz``, ``.hspy``, ``.dm4``, ``model.json``
and ``manifest.json`` (issue 12).

Each mutant (flipped, inserted, zeroed or cut bytes; for JSON also values swapped for wrong
types, deep nesting and huge numbers, with the manifest re-signed half of the time) must
either be accepted or refused with one :class:`~eelsprint.exceptions.EelsprintError` line
naming the file; the mutant is never changed. Every tenth mutant also goes through the
command line: exit status 0, or 1 with exactly one ``error:`` line and no traceback.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from eelsprint import FingerprintClassifier
from eelsprint.data import guard
from eelsprint.data.io import read_spectra
from eelsprint.data.manifest import write_manifest
from eelsprint.exceptions import EelsprintError
from tests.conftest import SHARED_DATA
from tests.test_reliability import run_cli

SEED = 20261126
#: Mutants per kind; 5 kinds -> 300 files (about 20 s here, most of it HyperSpy's DM4 reader).
N = 60


def _mutate(data: bytes, rng: random.Random) -> bytes:
    buf = bytearray(data)
    op = rng.randrange(5)
    at = rng.randrange(len(buf))
    if op == 0:
        for _ in range(rng.randint(1, 16)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif op == 1:
        del buf[at:]
    elif op == 2:
        buf[at:at] = rng.randbytes(rng.randint(1, 64))
    elif op == 3:
        buf[at : at + rng.randint(1, 4096)] = bytes(min(4096, len(buf) - at))
    else:
        length = rng.randint(1, 256)
        buf[at:at] = buf[max(at - length, 0) : at]
    return bytes(buf)


_ODD: list[Any] = [None, [], {}, "", "x" * 500, -1, 0, 1e308, True, [[[[1]]]], {"a": {"b": None}}]


def _mutate_json(text: str, rng: random.Random) -> str:
    """Swap a random value for a wrong type, nest deeply, add a huge number, or mutate bytes."""
    op = rng.randrange(4)
    if op == 3:
        return _mutate(text.encode(), rng).decode("utf-8", "replace")
    obj = json.loads(text)
    node, key = obj, None
    while True:  # walk down to a random value; ``node[key]`` is replaced
        keys = list(node) if isinstance(node, dict) else list(range(len(node)))
        if not keys:
            break
        key = rng.choice(keys)
        if not isinstance(node[key], dict | list) or not node[key] or rng.random() < 0.3:
            break
        node = node[key]
    if key is None:
        return text[: rng.randrange(len(text))]
    if op == 0:
        node[key] = rng.choice(_ODD)
    elif op == 1:
        node[key] = "@DEEP@"
    else:
        node[key] = "@HUGE@"
    out = json.dumps(obj)
    return out.replace('"@DEEP@"', "[" * 50_000 + "]" * 50_000).replace('"@HUGE@"', "7" * 5_000)


def _check_refusal(err: BaseException, name: str) -> None:
    assert isinstance(err, EelsprintError), f"{type(err).__name__}: {err}"
    message = str(err)
    assert "\n" not in message.strip() and message.startswith(name), message


def _sources(rel_env: dict[str, Path], tmp: Path) -> dict[str, Path]:
    found = {"npz": rel_env["scan"]}
    for kind, pattern in (("hspy", "crl/Cr_L_cl.hspy"), ("dm4", "titan_si/EELS_SI.dm4")):
        path = SHARED_DATA / "real" / pattern
        if path.is_file():
            found[kind] = path
    return found


@pytest.mark.parametrize("kind", ["npz", "hspy", "dm4"])
def test_fuzzed_spectrum_files(
    kind: str,
    rel_env: dict[str, Path],
    tmp_path: Path,
    capfd: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # the HDF5 library loops forever on some mutants (.hspy mutant 24 of this seed): the guard's limit
    monkeypatch.setattr(guard, "READ_TIMEOUT_S", 10.0)
    source = _sources(rel_env, tmp_path).get(kind)
    if source is None:
        pytest.skip(f"no .{kind} file under {SHARED_DATA / 'real'}")
    rng = random.Random(f"{SEED}-{kind}")
    original = source.read_bytes()
    outcomes = {"read": 0, "refused": 0}
    for i in range(N):
        path = tmp_path / f"m{i:03d}.{kind}"
        data = _mutate(original, rng)
        path.write_bytes(data)
        try:
            read_spectra(path)
            outcomes["read"] += 1
        except Exception as err:
            _check_refusal(err, str(path))
            outcomes["refused"] += 1
        if i % 10 == 0:
            code, _, err_text = run_cli(
                capfd, "classify", path, "--model", rel_env["model"], "--out", tmp_path / "o"
            )
            lines = [line for line in err_text.splitlines() if line.strip()]
            assert code == 0 or (code == 1 and len(lines) == 1 and lines[0].startswith(f"error: {path}")), (
                err_text
            )
        assert path.read_bytes() == data
    assert outcomes["refused"] > 0, outcomes  # the mutations do reach the checks


def _model_copy(rel_env: dict[str, Path], path: Path) -> Path:
    shutil.copytree(rel_env["model"], path)
    return path


@pytest.mark.parametrize("name", ["model.json", "manifest.json"])
def test_fuzzed_model_directories(name: str, rel_env: dict[str, Path], tmp_path: Path) -> None:
    rng = random.Random(f"{SEED}-{name}")
    original = (rel_env["model"] / name).read_text()
    x = np.load(rel_env["scan"])["x"][:4]
    outcomes = {"loaded": 0, "refused": 0}
    for i in range(N):
        model = _model_copy(rel_env, tmp_path / f"m{i:03d}")
        text = _mutate_json(original, rng)
        (model / name).write_text(text, encoding="utf-8")
        if name == "model.json" and i % 2:  # re-signed: only the content checks stand in the way
            write_manifest(model, ["weights.safetensors", "model.json"])
        use: Callable[[], Any] = lambda m=model: FingerprintClassifier.load(m, progress=False).predict_proba(  # noqa: E731
            x, np.load(rel_env["scan"])["energy"]
        )
        try:
            proba = use()
            assert np.isfinite(proba).all()
            outcomes["loaded"] += 1
        except Exception as err:
            _check_refusal(err, str(model))
            outcomes["refused"] += 1
        assert (model / name).read_bytes() == text.encode("utf-8")  # bytes: a mutated "\r" survives
        shutil.rmtree(model)
    assert outcomes["refused"] > N // 2, outcomes
