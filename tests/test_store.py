"""Tests of eelsprint.data.store: the checksummed model directory."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from eelsprint.data import store
from eelsprint.exceptions import ModelFileError

META = {"classes": ["F50", "F25"], "config": {"latent_dim": 8, "window": [677.0, 736.75]}}


def _tensors() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return {
        "encoder.weight": torch.randn(4, 3, generator=generator, dtype=torch.float64).T,  # not contiguous
        "counts": torch.tensor([1, 2, 3], dtype=torch.int32),
        "mask": torch.tensor([True, False]),
    }


@pytest.fixture
def model_dir(tmp_path: Path) -> Path:
    path = tmp_path / "model"
    store.save_model_dir(path, _tensors(), META)
    return path


def test_round_trip(model_dir: Path) -> None:
    tensors, meta = store.load_model_dir(model_dir)
    expected = _tensors()
    assert set(tensors) == set(expected)
    assert tensors["encoder.weight"].dtype == torch.float32
    torch.testing.assert_close(tensors["encoder.weight"], expected["encoder.weight"].float())
    assert tensors["counts"].dtype == torch.int64 and tensors["counts"].tolist() == [1, 2, 3]
    assert tensors["mask"].tolist() == [1, 0]
    assert meta["classes"] == META["classes"] and meta["config"] == META["config"]
    assert meta["format_version"] == store.FORMAT_VERSION
    assert isinstance(meta["eelsprint_version"], str)
    assert sorted(p.name for p in model_dir.iterdir()) == [
        "manifest.json",
        "model.json",
        "weights.safetensors",
    ]


def test_manifest_lists_checksums_of_other_files(model_dir: Path) -> None:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    assert manifest["format_version"] == store.FORMAT_VERSION
    assert set(manifest["files"]) == {"weights.safetensors", "model.json"}
    for name, entry in manifest["files"].items():
        assert entry["size"] == (model_dir / name).stat().st_size
        assert len(entry["sha256"]) == 64


def test_save_replaces_existing_model(model_dir: Path) -> None:
    store.save_model_dir(model_dir, {"w": torch.zeros(2)}, {"classes": ["a", "b"]})
    tensors, meta = store.load_model_dir(model_dir)
    assert list(tensors) == ["w"] and meta["classes"] == ["a", "b"]
    assert [p.name for p in model_dir.parent.iterdir()] == ["model"]


def test_unserialisable_meta_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(TypeError):
        store.save_model_dir(tmp_path / "model", _tensors(), {"bad": object()})
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["weights.safetensors", "model.json"])
def test_flipped_byte_is_detected(model_dir: Path, name: str) -> None:
    path = model_dir / name
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelFileError, match=f"{name} was modified or truncated \\(checksum mismatch\\)"):
        store.load_model_dir(model_dir)


def test_truncated_weights_are_detected(model_dir: Path) -> None:
    path = model_dir / "weights.safetensors"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ModelFileError, match="truncated") as info:
        store.load_model_dir(model_dir)
    assert str(model_dir) in str(info.value)


def test_missing_manifest(model_dir: Path) -> None:
    (model_dir / "manifest.json").unlink()
    with pytest.raises(ModelFileError, match="incomplete or half-written"):
        store.load_model_dir(model_dir)


def test_missing_listed_file(model_dir: Path) -> None:
    (model_dir / "model.json").unlink()
    with pytest.raises(ModelFileError, match=r"model.json is missing"):
        store.load_model_dir(model_dir)


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelFileError, match="nowhere: model directory not found"):
        store.load_model_dir(tmp_path / "nowhere")


def test_unreadable_manifest(model_dir: Path) -> None:
    (model_dir / "manifest.json").write_text("{not json")
    with pytest.raises(ModelFileError, match=r"manifest.json is unreadable"):
        store.load_model_dir(model_dir)


def _rewrite_json(model_dir: Path, name: str, **changes: object) -> None:
    path = model_dir / name
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_other_format_version_in_manifest(model_dir: Path) -> None:
    _rewrite_json(model_dir, "manifest.json", format_version=store.FORMAT_VERSION + 1)
    message = f"format {store.FORMAT_VERSION + 1}, this is format {store.FORMAT_VERSION}; re-fit the model"
    with pytest.raises(ModelFileError, match=message):
        store.load_model_dir(model_dir)


def test_other_format_version_in_model_json(model_dir: Path) -> None:
    # A consistent directory (checksums updated) whose metadata says format 0.
    _rewrite_json(model_dir, "model.json", format_version=0)
    manifest = json.loads((model_dir / "manifest.json").read_text())
    meta = model_dir / "model.json"
    manifest["files"]["model.json"] = {"sha256": store.sha256_file(meta), "size": meta.stat().st_size}
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match="written by eelsprint format 0, this is format 1"):
        store.load_model_dir(model_dir)


def test_manifest_entry_outside_directory_is_refused(model_dir: Path) -> None:
    manifest = json.loads((model_dir / "manifest.json").read_text())
    manifest["files"]["../escape"] = {"sha256": "0" * 64, "size": 0}
    (model_dir / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelFileError, match=r"invalid entry '../escape'"):
        store.load_model_dir(model_dir)


def _dead_pid() -> int:
    """A process id that no longer runs (a child that has exited and been reaped)."""
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    return child.pid


def test_stale_temporaries_of_dead_processes_are_cleaned_and_half_swap_rolled_back(tmp_path: Path) -> None:
    path = tmp_path / "model"
    store.save_model_dir(path, _tensors(), META)
    pid = _dead_pid()
    # a killed writer: its temporary folder, and a swap stopped between the two renames
    (tmp_path / f".model.tmp-{pid}-0badc0de").mkdir()
    path.rename(tmp_path / f".model.old-{pid}-deadbeef")
    alive = tmp_path / f".model.tmp-{os.getpid()}-00000000"  # ours: a live process, kept
    alive.mkdir()
    store.save_model_dir(tmp_path / "other", _tensors(), META)  # another path: nothing recovered
    assert not path.exists()
    store.save_model_dir(path, {"w": torch.ones(1)}, META)  # the next run on the same path
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["model", "other", alive.name])
    assert list(store.load_model_dir(path)[0]) == ["w"]


def _save_many(path: str, seed: int) -> int:
    for i in range(10):
        store.save_model_dir(path, {"w": torch.full((64,), float(seed * 100 + i))}, META)
    return seed


def test_concurrent_saves_and_loads_never_fail(tmp_path: Path) -> None:
    import concurrent.futures
    import multiprocessing

    path = tmp_path / "model"
    store.save_model_dir(path, {"w": torch.zeros(64)}, META)
    context = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(4, mp_context=context) as pool:
        jobs = [pool.submit(_save_many, str(path), seed) for seed in range(4)]
        loads = 0
        while not all(job.done() for job in jobs):
            tensors, _ = store.load_model_dir(path)  # a reader alongside never sees a gap
            assert tensors["w"].shape == (64,)
            loads += 1
        assert sorted(job.result() for job in jobs) == [0, 1, 2, 3]
    assert loads > 0
    assert [p.name for p in tmp_path.iterdir()] == ["model"]  # no orphaned temporary folders


def test_malformed_json_at_any_depth_or_size_is_one_error(model_dir: Path) -> None:
    for text in ("[" * 100_000, '{"format_version": ' + "9" * 5000 + "}", "\xff\xfe", "null"):
        (model_dir / "manifest.json").write_text(text, encoding="utf-8", errors="surrogateescape")
        with pytest.raises(ModelFileError, match="manifest.json is unreadable"):
            store.load_model_dir(model_dir)


def test_non_finite_weights_are_refused(tmp_path: Path) -> None:
    store.save_model_dir(tmp_path / "m", {"w": torch.tensor([1.0, float("inf")])}, META)
    with pytest.raises(ModelFileError, match="tensor 'w' holds NaN or inf"):
        store.load_model_dir(tmp_path / "m")


def test_check_tensors_names_the_first_disagreement(tmp_path: Path) -> None:
    tensors = {"a": torch.zeros(2, 3), "head.b": torch.zeros(1)}
    store.check_tensors(tmp_path, tensors, {"a": (2, 3), "head.b": (1,)})
    store.check_tensors(
        tmp_path, {"a": torch.zeros(2, 3)}, {"a": (2, 3), "head.b": (1,)}, optional=("head.",)
    )
    with pytest.raises(ModelFileError, match=r"tensor 'a' has shape \(2, 3\), expected \(3, 2\)"):
        store.check_tensors(tmp_path, tensors, {"a": (3, 2), "head.b": (1,)})
    with pytest.raises(ModelFileError, match="missing tensor 'c'"):
        store.check_tensors(tmp_path, tensors, {"a": (2, 3), "head.b": (1,), "c": (1,)})
    with pytest.raises(ModelFileError, match="unexpected tensor 'head.b'"):
        store.check_tensors(tmp_path, tensors, {"a": (2, 3)})
