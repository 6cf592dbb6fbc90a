"""Run the chunks of :func:`eelsprint.scale.store.classify_to_store` on a ``dask.distributed`` cluster.

The fitted model goes to every worker once (``Client.scatter(..., broadcast=True)``); each
task then gets only a reference to it and one chunk of spectra, read on a worker from the
input file (which the workers must see at the same path). Results come back to this
process, the one writer of the store, as they finish; a bounded number of chunks is in
flight, so neither the cluster nor this process holds the whole series. A worker lost
mid-run has its tasks rerun elsewhere by the scheduler; a store left unfinished by a lost
client is completed with ``resume``. A cluster whose workers are all paused (memory above
their pause threshold) stops the run with one line instead of waiting forever.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Iterator
from typing import Any

import xarray as xr

from eelsprint.classify import FingerprintClassifier
from eelsprint.data.lazy import LazySpectra, Region
from eelsprint.exceptions import ConfigError, first_line
from eelsprint.scale.store import Runner, classify_values

__all__ = ["cluster_runner", "connect", "paused_error", "wait_for_a_chunk"]

#: Seconds without a finished chunk after which the workers' status is checked.
STALL_CHECK_S = 10.0
#: Seconds between looks for a finished chunk while waiting.
POLL_S = 0.05


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


def cluster_runner(
    client: Any,
    clf: FingerprintClassifier,
    lazy: LazySpectra,
    mode: str,
    in_flight: int | None = None,
    stall_s: float = STALL_CHECK_S,
    batch_bytes: int | None = None,
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
    stall_s : float
        Seconds without a finished chunk after which a cluster of paused workers is an error
        (:func:`wait_for_a_chunk`).
    batch_bytes : int, optional
        Bytes of spectra classified at a time within a chunk (default: the whole chunk).
    """
    from distributed import as_completed

    def run(todo: list[tuple[int, Region]]) -> Iterator[tuple[int, xr.Dataset]]:
        if not todo:
            return
        threads = sum(client.nthreads().values()) or 1
        limit = max(1, in_flight or 2 * threads)
        try:
            model = client.scatter(clf, broadcast=True, hash=False)  # once, not once per task
        except TimeoutError:  # distributed's "No valid workers found"
            raise paused_error(client) or ConfigError(
                "--scheduler: no worker of the cluster took the model (distributed's scatter timed out)"
            ) from None
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
                classify_values, model, values, lazy.energy, lazy.source, mode, batch_bytes,
                key=f"eelsprint-{tag}-{k}",
            )  # fmt: skip
            chunk_of[future.key] = k
            done.add(future)

        for _ in range(limit):
            submit(next(queue, None))
        while not done.is_empty():
            wait_for_a_chunk(client, done, stall_s)
            future = next(done)
            result = future.result()
            k = chunk_of.pop(future.key)
            future.release()
            submit(next(queue, None))
            yield k, result

    return run


def wait_for_a_chunk(client: Any, done: Any, stall_s: float = STALL_CHECK_S) -> None:
    """Return when a chunk is ready in ``done`` (a ``distributed.as_completed``).

    Raises
    ------
    ConfigError
        If no chunk finishes for ``stall_s`` seconds while every worker is paused: a worker
        above its memory pause threshold runs nothing, and the run would wait forever.
    """
    since = time.monotonic()
    while not done.has_ready():
        time.sleep(POLL_S)
        if time.monotonic() - since < stall_s:
            continue
        error = paused_error(client)
        if error is not None:
            raise error
        since = time.monotonic()


def paused_error(client: Any) -> ConfigError | None:
    """The one-line error for a cluster whose workers are all paused; ``None`` when one is not."""
    info = client.scheduler_info(n_workers=-1)
    workers = list(info["workers"].values())
    if not workers or any(w.get("status") != "paused" for w in workers):
        return None
    return ConfigError(
        f"--scheduler {info.get('address', '?')}: all {len(workers)} workers are paused (their memory "
        "is above their pause threshold), so no chunk can run; give them more memory and rerun with --resume"
    )
