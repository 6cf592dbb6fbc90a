"""The model directory: weights, metadata and a checksummed manifest.

A model directory holds

``weights.safetensors``
    Every tensor (float32 or int64), read back with safetensors, which runs no code.
``model.json``
    The caller's metadata plus ``format_version`` and ``eelsprint_version``.
``manifest.json``
    ``format_version`` and the SHA-256 and size of every other file.

The directory is written into a temporary folder and renamed into place, so a reader
never sees a half-written model; a missing manifest therefore means an interrupted or
foreign directory.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from importlib import resources
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from eelsprint.data.atomic import atomic_directory
from eelsprint.exceptions import ModelFileError, first_line

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "META",
    "WEIGHTS",
    "default_model_path",
    "load_model_dir",
    "save_model_dir",
]

#: Version of the on-disk layout; bump it whenever old directories can no longer be read.
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
META = "model.json"
MANIFEST = "manifest.json"


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _storable(name: str, tensor: torch.Tensor) -> torch.Tensor:
    """Detached contiguous CPU copy as float32 (floating point) or int64 (integer, bool)."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"tensor {name!r} is a {type(tensor).__name__}, not a torch.Tensor")
    if tensor.is_complex():
        raise TypeError(f"tensor {name!r} is complex; only real tensors can be stored")
    dtype = torch.float32 if tensor.is_floating_point() else torch.int64
    return tensor.detach().to(device="cpu", dtype=dtype).contiguous()


def _package_version() -> str:
    """The installed distribution's version (from its metadata: ``eelsprint/__init__`` is not
    imported from this lower layer); ``"unknown"`` in a checkout that was never installed."""
    try:
        return importlib.metadata.version("eelsprint")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def save_model_dir(
    path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], meta: dict[str, Any]
) -> None:
    """Write a model directory atomically, replacing any existing one at ``path``.

    Parameters
    ----------
    path : str or path-like
        The model directory.
    tensors : dict of str to torch.Tensor
        Weights and buffers; floating point is stored as float32, integers as int64.
    meta : dict
        JSON-serialisable metadata (configuration, class names, ...). The keys
        ``format_version`` and ``eelsprint_version`` are set by this function.

    Raises
    ------
    TypeError, ValueError
        If a tensor is not a real tensor or ``meta`` is not JSON-serialisable
        (checked before anything is written).
    ModelFileError
        If the directory cannot be written.
    """
    path = Path(path)
    stored = {name: _storable(name, tensor) for name, tensor in tensors.items()}
    full_meta = {**meta, "format_version": FORMAT_VERSION, "eelsprint_version": _package_version()}
    meta_text = json.dumps(full_meta, indent=2, sort_keys=True, allow_nan=False) + "\n"
    try:
        with atomic_directory(path) as tmp:
            safetensors.torch.save_file(stored, str(tmp / WEIGHTS))
            (tmp / META).write_text(meta_text, encoding="utf-8")
            files = {
                name: {"sha256": sha256_file(tmp / name), "size": (tmp / name).stat().st_size}
                for name in (WEIGHTS, META)
            }
            manifest = {"format_version": FORMAT_VERSION, "files": files}
            (tmp / MANIFEST).write_text(
                json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8"
            )
    except OSError as err:
        raise ModelFileError(f"{path}: cannot write model directory ({first_line(err)})") from None


def _read_json(directory: Path, name: str) -> dict[str, Any]:
    try:
        data = json.loads((directory / name).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ModelFileError(f"{directory}: {name} is unreadable ({first_line(err)})") from None
    if not isinstance(data, dict):
        raise ModelFileError(f"{directory}: {name} is unreadable (expected a JSON object)")
    return data


def _check_format(directory: Path, name: str, data: dict[str, Any]) -> None:
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{directory}: {name} was written by eelsprint format {version}, "
            f"this is format {FORMAT_VERSION}; re-fit the model"
        )


def _verify_files(directory: Path, manifest: dict[str, Any]) -> None:
    files = manifest.get("files")
    if not isinstance(files, dict) or not {WEIGHTS, META} <= set(files):
        raise ModelFileError(f"{directory}: {MANIFEST} does not list {WEIGHTS} and {META}; incomplete model")
    for name, entry in files.items():
        if not isinstance(entry, dict) or Path(name).name != name or name in ("", ".", ".."):
            raise ModelFileError(f"{directory}: {MANIFEST} has an invalid entry {name!r}")
        file = directory / name
        if not file.is_file():
            raise ModelFileError(f"{directory}: {name} is missing (listed in {MANIFEST})")
        if file.stat().st_size != entry.get("size") or sha256_file(file) != entry.get("sha256"):
            raise ModelFileError(f"{directory}: {name} was modified or truncated (checksum mismatch)")


def load_model_dir(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Verify and read a model directory written by :func:`save_model_dir`.

    Parameters
    ----------
    path : str or path-like
        The model directory.

    Returns
    -------
    tensors : dict of str to torch.Tensor
        The stored tensors, on the CPU.
    meta : dict
        Contents of ``model.json``, including ``format_version`` and ``eelsprint_version``.

    Raises
    ------
    ModelFileError
        If the directory is missing, incomplete, tampered with, from another format
        version, or holds unreadable files.
    """
    directory = Path(path)
    if not directory.exists():
        raise ModelFileError(f"{directory}: model directory not found")
    if not directory.is_dir():
        raise ModelFileError(f"{directory}: is not a model directory")
    if not (directory / MANIFEST).is_file():
        raise ModelFileError(f"{directory}: no {MANIFEST}; the model directory is incomplete or half-written")
    manifest = _read_json(directory, MANIFEST)
    _check_format(directory, MANIFEST, manifest)
    _verify_files(directory, manifest)
    meta = _read_json(directory, META)
    _check_format(directory, META, meta)
    try:
        tensors = safetensors.torch.load_file(str(directory / WEIGHTS), device="cpu")
    except Exception as err:  # any failure: unreadable
        raise ModelFileError(f"{directory}: {WEIGHTS} is unreadable ({first_line(err)})") from None
    return tensors, meta


def default_model_path() -> Path:
    """The shipped default model directory (``models/default`` in the repository).

    Installed as package data (``eelsprint._default_model``, mapped from the repository's
    ``models/default`` in ``pyproject.toml``), so it exists in a wheel; in a source checkout
    run without installing, it is the checkout's ``models/default``.

    Raises
    ------
    ModelFileError
        If neither exists (a broken installation).
    """
    installed = Path(str(resources.files("eelsprint") / "_default_model"))
    checkout = Path(__file__).resolve().parents[3] / "models" / "default"
    for path in (installed, checkout):
        if (path / MANIFEST).is_file():
            return path
    raise ModelFileError(f"the shipped default model is missing (looked in the package data and {checkout})")
