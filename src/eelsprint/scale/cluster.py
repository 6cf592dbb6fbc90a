"""Run the chunks of :func:`eelsprint.scale.store.classify_to_store` on a ``dask.distributed`` cluster.

The fitted model goes to every worker once (``Client.scatter(..., broadcast=True)``); each
task then gets only a reference to it and one chunk of spectra, read on a worker from the
input file (which the workers must see at the same path). Results come back to this
process, the one writer of the store, as they finish; a bounded number of chunks is in
flight, so neither the cluster nor this process holds the whole series. A worker lost
mid-run has its tasks rerun elsewhere by the scheduler; a store left unfinished by a lost
client is completed with ``resume``.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from typing import Any

import numpy as np
import xarray as xr

from eelsprint.classify import FingerprintClassifier
from eelsprint.data.lazy import LazySpectra, Region
from eelsprint.data.spectra import Spectra
from eelsprint.exceptions import ConfigError, first_line
from eelsprint.scale.store import Runner

__all__ = ["classify_array", "cluster_runner", "connect"]


def connect(address: str, timeout: float = 10.0) -> Any:
    """A ``distributed.Client`` of the scheduler at ``address`` (e.g. ``tcp://10.0.0.5:8786``).

    Raises
    ------
    ConfigError
        If no scheduler answers there within ``timeout`` seconds.
    """
    from distributed import Client

    try:
        return Client(address, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as err:
        reason = first_line(err)
        raise ConfigError(f"--scheduler {address}: cannot connect to a Dask scheduler ({reason})") from None


def classify_array(
    clf: FingerprintClassifier, values: np.ndarray, energy: np.ndarray, source: str, mode: str
) -> xr.Dataset:
    """Classify one chunk of spectra on a worker."""
    return clf.classify(Spectra(np.asarray(values), energy, source), mode=mode)


def cluster_runner(
    client: Any, clf: FingerprintClassifier, lazy: LazySpectra, mode: str, in_flight: int | None = None
) -> Runner:
    """A runner for :func:`~eelsprint.scale.store.classify_to_store` that uses ``client``'s cluster.

    Parameters
    ----------
    client : distributed.Client
    clf : FingerprintClassifier
        Sent to every worker once, when the runner starts.
    lazy : LazySpectra
        The input; its chunks are read on the workers.
    mode : str
        As :meth:`FingerprintClassifier.classify`.
    in_flight : int, optional
        Chunks submitted and not yet written back; default twice the cluster's threads.
    """
    from distributed import as_completed

    def run(todo: list[tuple[int, Region]]) -> Iterator[tuple[int, xr.Dataset]]:
        if not todo:
            return
        threads = sum(client.nthreads().values()) or 1
        limit = max(1, in_flight or 2 * threads)
        model = client.scatter(clf, broadcast=True, hash=False)  # once, not once per task
        tag = secrets.token_hex(4)
        chunk_of: dict[str, int] = {}
        queue = iter(todo)
        done = as_completed()

        def submit(item: tuple[int, Region] | None) -> None:
            if item is None:
                return
            k, region = item
            values = client.compute(lazy.data[region])
            future = client.submit(
                classify_array, model, values, lazy.energy, lazy.source, mode, key=f"eelsprint-{tag}-{k}"
            )
            chunk_of[future.key] = k
            done.add(future)

        for _ in range(limit):
            submit(next(queue, None))
        for future in done:
            result = future.result()
            k = chunk_of.pop(future.key)
            future.release()
            submit(next(queue, None))
            yield k, result

    return run
