"""One input file to one Zarr result store, here or on a cluster (``classify --format zarr``)."""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from eelsprint.classify import FingerprintClassifier
from eelsprint.data.io import open_spectra
from eelsprint.data.lazy import DEFAULT_CHUNK_BYTES, LazySpectra
from eelsprint.data.resultstore import read_result_store, store_identity
from eelsprint.exceptions import ConfigError
from eelsprint.scale.store import StoreRun, classify_to_store, local_runner

__all__ = [
    "MEMORY_FIXED",
    "MEMORY_PER_BATCH",
    "MEMORY_PER_READ",
    "ScaleOptions",
    "chunk_bytes_for",
    "classify_file",
    "limit_malloc_arenas",
    "parse_size",
]

#: Memory the out-of-core run needs beyond the loaded model whatever the chunk size (Zarr's,
#: Dask's and PyTorch's threads and buffers, the result being written), per byte of a chunk as
#: read (float32: the raw chunk, and its compressed bytes while it is decoded), and per byte of
#: a batch classified at a time (float64 copies, preprocessing, the library fits of the
#: out-of-library score, the results). Fitted to the worst of the measured peaks on the realism
#: series (malloc arenas capped by ``limit_malloc_arenas``): 336 MiB above the model for 22.5 MiB
#: chunks classified whole, 371 MiB for 90 MiB chunks in 21 MiB batches; the fixed part has
#: 38 MiB of margin. See ``evaluation/results/scale-bench-cpu-2core.md``.
MEMORY_FIXED = 192 * 2**20
MEMORY_PER_READ = 2
MEMORY_PER_BATCH = 6


def limit_malloc_arenas(arenas: int = 2) -> bool:
    """Cap glibc's malloc arenas (``M_ARENA_MAX``) for threads started from now on; True if done.

    Each thread that allocates (Zarr's I/O and codec threads, the reader of the next chunk)
    otherwise gets an arena of its own, whose freed memory is not given back: measured 130 MB
    of resident memory on 12 MB chunks. Without glibc, nothing happens.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    try:
        return bool(ctypes.CDLL(name).mallopt(-8, arenas)) if name else False  # -8: M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def parse_size(text: str, option: str) -> int:
    """``"100MB"``, ``"2GiB"``, ``"500e6"`` -> bytes; a one-line ConfigError naming ``option`` otherwise."""
    from dask.utils import parse_bytes

    try:
        size = int(parse_bytes(text))
    except (ValueError, TypeError):
        size = 0
    if size < 1:
        raise ConfigError(f"{option} {text!r}: expected a size such as 100MB or 2GB")
    return size


def chunk_bytes_for(
    chunk_bytes: int, memory_limit: int | None, in_use: int | None = None, stored_bytes: int = 0
) -> int:
    """The bytes to classify at a time: ``chunk_bytes``, lowered to keep within ``memory_limit``.

    ``in_use`` is what the process holds before the first chunk (Python, PyTorch, the model;
    default: its resident memory now). Of the rest, :data:`MEMORY_FIXED` goes to the
    machinery, :data:`MEMORY_PER_READ` times the bytes of a chunk as read to reading (a chunk
    is at least one stored chunk of ``stored_bytes``, which a compressed file decodes whole),
    and :data:`MEMORY_PER_BATCH` times the returned size to the classification of a batch.

    Raises
    ------
    ConfigError
        If ``memory_limit`` leaves less than 1 MB per batch.
    """
    if memory_limit is None:
        return chunk_bytes
    if in_use is None:
        import psutil

        in_use = int(psutil.Process().memory_info().rss)
    room = memory_limit - in_use - MEMORY_FIXED
    batch = room // (MEMORY_PER_READ + MEMORY_PER_BATCH)  # a chunk read is one batch
    if batch < stored_bytes:  # a chunk read is one stored chunk, classified in batches
        batch = (room - MEMORY_PER_READ * stored_bytes) // MEMORY_PER_BATCH
    if batch < 2**20:
        stored = f" and reads chunks of {stored_bytes / 1e6:.0f} MB whole" if stored_bytes > batch else ""
        raise ConfigError(
            f"--memory-limit {memory_limit / 1e6:.0f} MB leaves no room for chunks: this process "
            f"already holds {in_use / 1e6:.0f} MB (Python, PyTorch, the model), needs "
            f"{MEMORY_FIXED / 1e6:.0f} MB more{stored}; allow more"
        )
    return min(chunk_bytes, int(batch))


@dataclass(frozen=True)
class ScaleOptions:
    """How ``classify --format zarr`` runs.

    Attributes
    ----------
    chunk_bytes : int
        Bytes of input spectra per chunk (navigation axes only).
    memory_limit : int or None
        Bytes of resident memory the local process may use in all (lowers the bytes classified
        at a time, see :func:`chunk_bytes_for`); ignored on a cluster, whose workers have their
        own limits.
    scheduler : str or None
        Address of a ``dask.distributed`` scheduler; ``None``: this machine.
    resume : bool
        Finish an existing store instead of starting afresh.
    """

    chunk_bytes: int = DEFAULT_CHUNK_BYTES
    memory_limit: int | None = None
    scheduler: str | None = None
    resume: bool = False

    def __post_init__(self) -> None:
        if self.chunk_bytes < 1 or (self.memory_limit is not None and self.memory_limit < 1):
            raise ConfigError(f"chunk size and memory limit must be positive, got {self}")


def classify_file(
    clf: FingerprintClassifier,
    path: str | os.PathLike[str],
    target: str | os.PathLike[str],
    options: ScaleOptions,
    *,
    mode: str | None = None,
    nav_shape: Sequence[int] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
) -> tuple[StoreRun, np.ndarray]:
    """Classify the file ``path`` lazily into the store ``target``.

    Returns
    -------
    run : StoreRun
    counts : ndarray of int, shape (n_classes,)
        Spectra per label in the finished store.

    Raises
    ------
    ConfigError
        No scheduler at ``options.scheduler``, or a bad mode.
    InputDataError, OutputError
        As :func:`eelsprint.scale.store.classify_to_store`.
    """
    limit = None if options.scheduler else options.memory_limit
    if limit is not None:
        limit_malloc_arenas()
    lazy = open_spectra(path, nav_shape, chunk_bytes=None)  # rechunked once, below
    batch = chunk_bytes_for(options.chunk_bytes, limit, stored_bytes=lazy.stored_nbytes)
    resumed = _layout_of(target, lazy) if options.resume else None
    lazy = lazy.rechunk(batch) if resumed is None else resumed
    mode = mode or clf.config_.inference.mode
    if options.scheduler is None:
        runner = local_runner(clf, lazy, mode, batch_bytes=batch)
        run = classify_to_store(
            clf, lazy, target, mode=mode, resume=options.resume, runner=runner, progress=progress
        )
    else:
        from eelsprint.scale.cluster import cluster_runner, connect

        with connect(options.scheduler) as client:
            if client.dashboard_link:
                log(f"dashboard: {client.dashboard_link}")
            runner = cluster_runner(client, clf, lazy, mode, batch_bytes=batch)
            run = classify_to_store(
                clf, lazy, target, mode=mode, resume=options.resume, runner=runner, progress=progress
            )
    import dask.array as da

    labels = read_result_store(Path(target))["label"].data  # int32 per spectrum, read chunk by chunk
    return run, np.asarray(da.bincount(labels.ravel(), minlength=len(clf.classes_)).compute())


def _layout_of(target: str | os.PathLike[str], lazy: LazySpectra) -> LazySpectra | None:
    """``lazy`` in the chunks of the store ``target`` (resume there whatever the memory now), if any."""
    identity = store_identity(Path(target))
    chunks = (identity or {}).get("chunks")
    if not chunks or [sum(c) for c in chunks] != list(lazy.nav_shape):
        return None
    return LazySpectra(lazy.data.rechunk((*map(tuple, chunks), -1)), lazy.energy, lazy.source, lazy.stored)
