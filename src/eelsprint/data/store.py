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

import importlib.metadata
import json
import os
from collections.abc import Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import safetensors.torch
import torch

from eelsprint.data.atomic import atomic_directory, locked
from eelsprint.data.manifest import (
    MANIFEST,
    read_json_object,
    read_manifest,
    sha256_file,
    verify_files,
    write_manifest,
)
from eelsprint.exceptions import ModelFileError, first_line

__all__ = [
    "FORMAT_VERSION",
    "MANIFEST",
    "META",
    "WEIGHTS",
    "check_tensors",
    "default_model_path",
    "is_model_dir",
    "load_model_dir",
    "save_model_dir",
    "sha256_file",
]

#: Version of the on-disk layout; bump it whenever old directories can no longer be read.
FORMAT_VERSION = 1
WEIGHTS = "weights.safetensors"
META = "model.json"


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
    OutputError
        If the directory cannot be written (nothing is left behind).
    """
    path = Path(path)
    stored = {name: _storable(name, tensor) for name, tensor in tensors.items()}
    full_meta = {**meta, "format_version": FORMAT_VERSION, "eelsprint_version": _package_version()}
    meta_text = json.dumps(full_meta, indent=2, sort_keys=True, allow_nan=False) + "\n"
    weights = safetensors.torch.save(stored)  # in memory: a full disk fails on our own write
    with atomic_directory(path) as tmp:
        # written by Python, not safetensors (which makes 0600 files): the umask decides
        (tmp / WEIGHTS).write_bytes(weights)
        (tmp / META).write_text(meta_text, encoding="utf-8")
        write_manifest(tmp, (WEIGHTS, META))


def is_model_dir(path: str | os.PathLike[str]) -> bool:
    """True if ``path`` is a folder that looks like an eelsprint model directory (not verified)."""
    path = Path(path)
    return path.is_dir() and not path.is_symlink() and all((path / n).is_file() for n in (MANIFEST, META))


def _check_format(directory: Path, name: str, data: dict[str, Any]) -> None:
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise ModelFileError(
            f"{directory}: {name} was written by eelsprint format {version}, "
            f"this is format {FORMAT_VERSION}; re-fit the model"
        )


def load_model_dir(
    path: str | os.PathLike[str], required: Mapping[str, type] | None = None
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Verify and read a model directory written by :func:`save_model_dir`.

    Parameters
    ----------
    path : str or path-like
        The model directory.
    required : mapping of str to type, optional
        Keys ``model.json`` must hold, with the JSON type of each (``dict``, ``list``, ``str``).

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
    with locked(directory.absolute().parent, shared=True):  # a writer may be swapping versions
        manifest = read_manifest(directory, ModelFileError)
        _check_format(directory, MANIFEST, manifest)
        verify_files(directory, manifest, (WEIGHTS, META), ModelFileError)
        meta = read_json_object(directory / META, ModelFileError)
        try:
            weights = (directory / WEIGHTS).read_bytes()
        except OSError as err:
            raise ModelFileError(f"{directory}: {WEIGHTS} is unreadable ({err.strerror})") from None
    _check_format(directory, META, meta)
    bad = [key for key, kind in (required or {}).items() if not isinstance(meta.get(key), kind)]
    if bad:
        raise ModelFileError(f"{directory}: {META} has no valid {bad[0]!r}")
    try:
        tensors = safetensors.torch.load(weights)
    except Exception as err:  # any failure: unreadable
        raise ModelFileError(f"{directory}: {WEIGHTS} is unreadable ({first_line(err)})") from None
    for name, tensor in tensors.items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ModelFileError(f"{directory}: tensor {name!r} holds NaN or inf; the model is unusable")
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


def check_tensors(
    directory: str | os.PathLike[str],
    tensors: Mapping[str, torch.Tensor],
    expected: Mapping[str, tuple[int, ...]],
    optional: tuple[str, ...] = (),
) -> None:
    """Check stored tensor names and shapes against what ``model.json`` implies.

    Parameters
    ----------
    directory : path
        The model directory (named in the error).
    tensors : mapping of str to torch.Tensor
        As loaded.
    expected : mapping of str to tuple of int
        Every required tensor's shape.
    optional : tuple of str
        Name prefixes that may be absent as a group (all or none), e.g. ``("head.",)``.

    Raises
    ------
    ModelFileError
        Naming the first missing, extra or wrongly shaped tensor.
    """
    present = set(tensors)
    for prefix in optional:
        group = {n for n in expected if n.startswith(prefix)}
        if not group & present:
            expected = {n: s for n, s in expected.items() if n not in group}
    missing, extra = sorted(set(expected) - present), sorted(present - set(expected))
    if missing or extra:
        what = f"missing tensor {missing[0]!r}" if missing else f"unexpected tensor {extra[0]!r}"
        raise ModelFileError(f"{directory}: {WEIGHTS} disagrees with {META}: {what}")
    for name, shape in expected.items():
        if tuple(tensors[name].shape) != tuple(shape):
            raise ModelFileError(
                f"{directory}: {WEIGHTS} disagrees with {META}: tensor {name!r} has shape "
                f"{tuple(tensors[name].shape)}, expected {tuple(shape)}"
            )
