"""Run a file reader in a forked child with a time limit: a corrupt file cannot hang eelsprint.

The HDF5 library can loop forever inside C on a corrupted ``.hspy`` file (found by
``tests/test_fuzz.py``); no Python signal can interrupt it. The reader therefore runs in
a child process (``fork``: nothing is imported again) that is killed after
:data:`READ_TIMEOUT_S` seconds; a reader that crashes or hangs is an
:class:`~eelsprint.exceptions.InputDataError` naming the file.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TypeVar

from eelsprint.exceptions import InputDataError, first_line

__all__ = ["READ_TIMEOUT_S", "guarded_read"]

#: Seconds a guarded reader may take (``EELSPRINT_READ_TIMEOUT_S`` overrides it).
READ_TIMEOUT_S = float(os.environ.get("EELSPRINT_READ_TIMEOUT_S", "120"))

T = TypeVar("T")


def _child(reader: Callable[[Path], T], path: Path, conn: Connection) -> None:
    try:
        result: tuple[bool, object] = (True, reader(path))
    except InputDataError as err:
        result = (False, str(err))
    except BaseException as err:  # readers fail in many ways
        result = (False, f"{path}: cannot read file ({first_line(err)})")
    conn.send(result)
    conn.close()


def guarded_read(reader: Callable[[Path], T], path: Path, timeout_s: float | None = None) -> T:
    """``reader(path)`` in a forked child, at most ``timeout_s`` seconds (default :data:`READ_TIMEOUT_S`).

    Falls back to a plain call where ``fork`` is unavailable.

    Raises
    ------
    InputDataError
        What the reader raised, or that it hung or crashed.
    """
    if "fork" not in multiprocessing.get_all_start_methods():
        return reader(path)
    limit = READ_TIMEOUT_S if timeout_s is None else timeout_s
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_child, args=(reader, path, send), daemon=True)
    process.start()
    send.close()
    try:
        if not receive.poll(limit):
            raise InputDataError(
                f"{path}: the reader did not finish in {limit:g} s; the file is probably corrupt"
            )
        ok, value = receive.recv()
    except EOFError:
        process.join()
        raise InputDataError(
            f"{path}: the reader crashed (exit status {process.exitcode}); the file is probably corrupt"
        ) from None
    finally:
        if process.is_alive():
            process.kill()
        process.join()
        receive.close()
    if not ok:
        raise InputDataError(value)
    return value
