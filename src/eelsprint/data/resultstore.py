"""Zarr result stores written chunk by chunk, with a completion record per chunk (resumable).

A store holds the variables and coordinates of a NetCDF result (:func:`eelsprint.maps.to_dataset`),
chunked along navigation as the input was, plus a group ``eelsprint`` with

- ``done``: one ``uint8`` per chunk of the input (one Zarr chunk each), set to 1 only after
  every variable of that chunk is written. Zarr's local store writes each file atomically,
  so a process killed at any point leaves each chunk either recorded or to be redone;
- the attribute ``identity``: the model, mode, input and chunk layout the store was made for,
  written last at creation (a store without it was never fully created).

Opening an existing store with Zarr's ``"w"`` mode would discard finished work, and
writing into it without the record could silently leave holes: :func:`create_store`
is only called for a new store, :func:`write_chunk` records each chunk it completes.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from eelsprint.exceptions import InputDataError, OutputError, first_line

__all__ = [
    "create_store",
    "done_chunks",
    "is_result_store",
    "read_result_store",
    "store_identity",
    "write_chunk",
    "writing",
]

PathLike = str | os.PathLike[str]
_GROUP = "eelsprint"


@contextlib.contextmanager
def writing(path: Path, what: str = "the result store") -> Iterator[None]:
    """Turn an ``OSError`` while writing ``what`` at ``path`` into a one-line :class:`OutputError`."""
    try:
        yield
    except OSError as err:
        raise OutputError(f"{path}: cannot write {what} ({first_line(err)})") from None


def store_identity(path: PathLike) -> dict[str, Any] | None:
    """The ``identity`` a store was created with; ``None`` if ``path`` is no complete eelsprint store."""
    import zarr

    try:
        group = zarr.open_group(Path(path) / _GROUP, mode="r")
        identity = group.attrs.get("identity")
    except Exception:  # not Zarr, not ours, unreadable
        return None
    return dict(identity) if isinstance(identity, dict) else None


def is_result_store(path: PathLike) -> bool:
    """True if ``path`` is a Zarr result store written by eelsprint (possibly half-created)."""
    import zarr

    try:
        attrs = zarr.open_group(path, mode="r").attrs
    except Exception:  # not Zarr, unreadable
        return False
    return {"classes", "integration"} <= set(attrs)


def create_store(path: PathLike, template: Any, n_chunks: tuple[int, ...], identity: dict[str, Any]) -> None:
    """Create an empty store: ``template``'s variables (Dask arrays, not computed), an all-zero record.

    Parameters
    ----------
    path : path
        The ``.zarr`` folder; an existing one is replaced (the caller checked that it may be).
    template : xarray.Dataset
        Variables of the full result as Dask arrays with the store's chunks; coordinates in memory.
    n_chunks : tuple of int
        Chunks along each navigation axis.
    identity : dict
        JSON-able description of what the store is for (see :func:`store_identity`).

    Raises
    ------
    OutputError
        If the store cannot be written.
    """
    import zarr

    path = Path(path)
    with writing(path):
        if path.exists():
            shutil.rmtree(path)
        template.to_zarr(path, mode="w", compute=False, consolidated=False)
        group = zarr.open_group(path, mode="r+").create_group(_GROUP)
        shape = n_chunks or (1,)
        group.create_array("done", shape=shape, chunks=(1,) * len(shape), dtype="u1", fill_value=0)
        group.attrs["identity"] = identity


def done_chunks(path: PathLike) -> np.ndarray:
    """Boolean array over the chunk grid: True where a chunk is recorded complete."""
    import zarr

    done = zarr.open_array(Path(path) / _GROUP / "done", mode="r")
    return np.asarray(done[...]).astype(bool)


def write_chunk(path: PathLike, ds: Any, region: dict[str, slice], index: tuple[int, ...]) -> None:
    """Write one chunk's results into the store at ``region``, then record chunk ``index`` as done.

    ``ds`` holds the variables of the store (those along the navigation dims ``region`` names),
    each shaped as ``region`` along those dims; they are written as stored (no encoding). An
    ``OSError`` becomes :class:`OutputError`.
    """
    import zarr

    path = Path(path)
    with writing(path):
        arrays = dict(zarr.open_group(path, mode="r+").arrays())
        for name, var in ds.data_vars.items():
            where = tuple(region.get(str(d), slice(None)) for d in var.dims)
            arrays[str(name)][where] = np.asarray(var.values)
        zarr.open_array(path / _GROUP / "done", mode="r+")[index or (0,)] = 1


def read_result_store(path: PathLike) -> Any:
    """Open a complete result store as an ``xarray.Dataset`` (lazy, Dask-backed).

    Raises
    ------
    InputDataError
        If ``path`` is not an eelsprint result store, or some chunks are not written yet.
    """
    import xarray as xr

    path = Path(path)
    if store_identity(path) is None:
        raise InputDataError(f"{path}: not a result store written by eelsprint classify --format zarr")
    done = done_chunks(path)
    if not done.all():
        raise InputDataError(
            f"{path}: incomplete, {int(done.sum())} of {done.size} chunks written; "
            "finish it with eelsprint classify ... --format zarr --resume"
        )
    return xr.open_zarr(path, consolidated=False)
