"""Classify lazy spectra chunk by chunk into a resumable Zarr store.

The one writer is this process: chunks are classified here (local threads) or on a
``dask.distributed`` cluster (:mod:`eelsprint.scale.cluster`), and each result is written
into the store and recorded complete (:mod:`eelsprint.data.resultstore`) as it arrives.
A rerun with ``resume=True`` computes only the chunks not recorded, after checking that the
store was made for the same model, mode, input and chunk layout.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Hashable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from tqdm.auto import tqdm

from eelsprint.classify import FingerprintClassifier
from eelsprint.data.lazy import LazySpectra, Region, batch_grid, chunk_regions
from eelsprint.data.resultstore import create_store, done_chunks, store_identity, write_chunk
from eelsprint.data.spectra import Spectra
from eelsprint.exceptions import OutputError
from eelsprint.maps import nav_dims

__all__ = ["StoreRun", "classify_block", "classify_to_store", "classify_values", "identity_of"]

#: Yields ``(chunk index, dataset)`` for the chunks asked for, in any order.
Runner = Callable[[list[tuple[int, Region]]], Iterable[tuple[int, xr.Dataset]]]


@dataclass(frozen=True)
class StoreRun:
    """What :func:`classify_to_store` did: chunks in the store, computed now, already there."""

    path: Path
    n_chunks: int
    computed: int
    skipped: int
    n_spectra: int


def classify_values(
    clf: FingerprintClassifier, values: np.ndarray, energy: np.ndarray, source: str, mode: str,
    batch_bytes: int | None = None,
) -> xr.Dataset:  # fmt: skip
    """Classify one chunk's raw values, ``batch_bytes`` of them at a time; one Dataset for the chunk.

    Batches bound the working memory (float64 copies, preprocessing, library fits) of a chunk
    that is larger than that, such as a stored chunk that must be decoded whole.
    """
    nav = values.shape[:-1]
    if batch_bytes is None or values.nbytes <= batch_bytes or not nav:
        return clf.classify(Spectra(values, energy, source), mode=mode)
    grid = batch_grid(nav, values.shape[-1] * values.itemsize, batch_bytes)
    nested = np.empty([len(sizes) for sizes in grid], dtype=object)
    for k, part in enumerate(chunk_regions(grid)):
        nested.flat[k] = clf.classify(Spectra(values[part], energy, source), mode=mode)
    return xr.combine_nested(
        nested.tolist(), concat_dim=list(nav_dims(len(nav))), data_vars="all", coords="minimal",
        compat="override", join="override", combine_attrs="override",
    )  # fmt: skip


def classify_block(
    clf: FingerprintClassifier, lazy: LazySpectra, region: Region, mode: str, batch_bytes: int | None = None
) -> xr.Dataset:
    """Read one chunk and classify it in batches of ``batch_bytes`` (runs on a thread or a worker)."""
    return classify_values(clf, lazy.read(region), lazy.energy, lazy.source, mode, batch_bytes)


def identity_of(clf: FingerprintClassifier, lazy: LazySpectra, mode: str) -> dict[str, Any]:
    """What a store is for: resuming into it with anything else is refused."""
    return {
        "model_id": clf.model_id(),
        "encoder_id": clf.encoder_id_,
        "integration": mode,
        "source": lazy.source,
        "nav_shape": list(lazy.nav_shape),
        "n_channels": lazy.n_channels,
        "chunks": [list(c) for c in lazy.data.chunks[:-1]],
    }


def _check_resumable(path: Path, identity: dict[str, Any]) -> None:
    stored = store_identity(path)
    if stored is None:
        return  # never fully created: nothing recorded, start afresh
    differ = [key for key in identity if stored.get(key) != identity[key]]
    if differ:
        what = ", ".join(f"{k} {stored.get(k)!r} (now {identity[k]!r})" for k in differ)
        raise OutputError(
            f"{path}: cannot resume, the store was written with other settings: {what}; "
            "use the same model, mode and --chunk-size, or drop --resume to start afresh"
        )


def _template(first: xr.Dataset, lazy: LazySpectra, identity: dict[str, Any]) -> xr.Dataset:
    """The full result as Dask zeros (metadata only) shaped after one chunk's result."""
    import dask.array as da

    dims = nav_dims(len(lazy.nav_shape))
    sizes: dict[Hashable, int] = dict(zip(dims, lazy.nav_shape, strict=True))
    chunks: dict[Hashable, tuple[int, ...]] = dict(zip(dims, lazy.data.chunks[:-1], strict=True))
    data = {}
    for name, var in first.data_vars.items():
        shape = tuple(sizes.get(d, n) for d, n in zip(var.dims, var.shape, strict=True))
        parts = tuple(chunks.get(d, (n,)) for d, n in zip(var.dims, var.shape, strict=True))
        data[name] = (var.dims, da.zeros(shape, chunks=parts, dtype=var.dtype), var.attrs)
    coords = {k: np.asarray(v.values, dtype=object) for k, v in first.coords.items()}  # Zarr v3 strings
    attrs = {**first.attrs, "model_id": identity["model_id"]}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def local_runner(
    clf: FingerprintClassifier, lazy: LazySpectra, mode: str, workers: int = 1, batch_bytes: int | None = None
) -> Runner:
    """Classify chunks in this process; the next chunk is read while one is classified.

    ``workers`` chunks are classified at a time (each a thread), in batches of ``batch_bytes``
    (default: whole); ``workers + 1`` chunks are in memory at most.
    """

    def run(todo: list[tuple[int, Region]]) -> Iterator[tuple[int, xr.Dataset]]:
        with ThreadPoolExecutor(max(1, workers)) as pool:

            def submit(region: Region) -> Any:
                return pool.submit(classify_block, clf, lazy, region, mode, batch_bytes)

            pending = [(i, submit(r)) for i, r in todo[:workers]]
            queue = iter(todo[workers:])
            while pending:
                index, future = pending.pop(0)
                nxt = next(queue, None)
                if nxt is not None:
                    pending.append((nxt[0], submit(nxt[1])))
                yield index, future.result()

    return run


def classify_to_store(
    clf: FingerprintClassifier,
    lazy: LazySpectra,
    path: str | os.PathLike[str],
    *,
    mode: str | None = None,
    resume: bool = False,
    runner: Runner | None = None,
    progress: bool = True,
) -> StoreRun:
    """Classify ``lazy`` chunk by chunk into the Zarr store ``path``; resumable.

    Parameters
    ----------
    clf : FingerprintClassifier
        A fitted estimator.
    lazy : LazySpectra
        The input, chunked along navigation (:meth:`LazySpectra.rechunk`); the store is
        chunked the same way.
    path : path
        The ``.zarr`` folder. Without ``resume`` an existing one is replaced.
    mode : {"fast", "exact", "head"}, optional
        As :meth:`FingerprintClassifier.classify`. ``"exact"`` seeds its draws per chunk, so
        it matches the in-memory result only where the chunking is the same.
    resume : bool
        Compute only the chunks not recorded as complete in an existing store.
    runner : callable, optional
        Where chunks are classified: :func:`local_runner` (default, one thread) or
        :func:`eelsprint.scale.cluster.cluster_runner`.
    progress : bool
        Show a progress bar of chunks done.

    Returns
    -------
    StoreRun

    Raises
    ------
    OutputError
        ``resume`` into a store written for another model, mode, input or chunk layout, or
        the store cannot be written.
    NotFittedError, ConfigError, InputDataError
        As :meth:`FingerprintClassifier.classify` (bad values when their chunk is read).
    """
    path = Path(path)
    mode = mode or clf.config_.inference.mode
    clf.classify(lazy.block(tuple(slice(0, 1) for _ in lazy.nav_shape)), mode=mode)  # checks first
    identity = identity_of(clf, lazy, mode)
    regions = lazy.regions()
    grid = tuple(len(c) for c in lazy.data.chunks[:-1])
    indices = [tuple(int(i) for i in np.unravel_index(k, grid)) for k in range(len(regions))]
    if resume:
        _check_resumable(path, identity)
    created = resume and store_identity(path) is not None
    done = done_chunks(path).reshape(-1) if created else np.zeros(len(regions), bool)
    todo = [(k, regions[k]) for k in range(len(regions)) if not done[k]]
    run = (runner or local_runner(clf, lazy, mode))(todo)
    dims = nav_dims(len(lazy.nav_shape))
    bar = tqdm(total=len(regions), initial=len(regions) - len(todo), desc="chunks", disable=not progress)
    with bar:
        for k, ds in run:
            if not created:
                create_store(path, _template(ds, lazy, identity), grid, identity)
                created = True
            region = dict(zip(dims, regions[k], strict=True))
            write_chunk(path, ds, region, indices[k])
            bar.update(1)
    return StoreRun(path, len(regions), len(todo), len(regions) - len(todo), math.prod(lazy.nav_shape))
