"""Atomic, locked writes: a file or folder appears complete under its name, or not at all.

Outputs are written to a hidden temporary sibling ``.<name>.tmp-<pid>-<random>`` and put in
place with one rename (a folder that replaces another is swapped in with one
``renameat2(RENAME_EXCHANGE)`` on Linux; elsewhere with two renames that the next run
rolls back if they were interrupted). While it writes, a process holds an exclusive
``flock`` on the parent folder, so concurrent writers to one folder take turns, and the
next writer removes the temporary siblings of processes that no longer run. Readers of a
folder (:func:`eelsprint.data.store.load_model_dir`) hold a shared lock, so they never see
the manifest of one version and the weights of the next.
An ``OSError`` while writing (permission denied, disk full) becomes
:class:`~eelsprint.exceptions.OutputError` naming the final path.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import json
import os
import re
import secrets
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from eelsprint.exceptions import EelsprintError, OutputError, first_line

__all__ = ["atomic_directory", "atomic_write", "locked", "write_bytes", "write_json"]

PathLike = str | os.PathLike[str]

_held = threading.local()  # folders whose lock this thread holds -> depth


def _temp_sibling(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _recover(path: Path) -> None:
    """Roll back a swap a dead process left half done, then remove its temporary siblings."""
    pattern = re.compile(rf"\.{re.escape(path.name)}\.(tmp|old)-(\d+)-[0-9a-f]+")
    stale = [
        (match[1], sibling)
        for sibling in path.parent.iterdir()
        if (match := pattern.fullmatch(sibling.name)) and not _alive(int(match[2]))
    ]
    for kind, sibling in sorted(stale):  # "old" before "tmp": restore the previous version first
        if kind == "old" and not (path.exists() or path.is_symlink()):
            os.replace(sibling, path)
        else:
            _remove(sibling)


@contextlib.contextmanager
def locked(folder: Path, *, shared: bool = False) -> Iterator[None]:
    """Hold a ``flock`` on ``folder``: exclusive for writers, ``shared`` for readers.

    Re-entrant within a thread; a no-op without fcntl, or for a reader that cannot open
    the folder.
    """
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    depth: dict[str, int] = _held.__dict__.setdefault("depth", {})
    key = os.path.realpath(folder)
    if depth.get(key):
        depth[key] += 1
        try:
            yield
        finally:
            depth[key] -= 1
        return
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        if not shared:
            raise
        yield
        return
    try:
        fcntl.flock(fd, fcntl.LOCK_SH if shared else fcntl.LOCK_EX)
        depth[key] = 1
        try:
            yield
        finally:
            depth[key] = 0
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


@contextlib.contextmanager
def _writing(path: Path) -> Iterator[None]:
    """Make the parent, lock it, recover from dead writers; turn OSError into OutputError."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with locked(path.parent):
            _recover(path)
            yield
    except EelsprintError:
        raise
    except OSError as err:
        raise OutputError(f"{path}: cannot write ({err.strerror or first_line(err)})") from None


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths in one step (Linux ``renameat2``); False where unsupported."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    code = ctypes.get_errno()
    if code in (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EPERM):
        return False
    raise OSError(code, os.strerror(code), str(b))


def _put_in_place(tmp: Path, path: Path) -> None:
    """Move ``tmp`` onto ``path``; an existing folder (or a file replaced by one) is swapped out."""
    if not (path.exists() or path.is_symlink()):
        os.replace(tmp, path)
        return
    if not (tmp.is_dir() or path.is_dir()):
        os.replace(tmp, path)
        return
    if _exchange(tmp, path):
        _remove(tmp)  # now the previous version
        return
    old = _temp_sibling(path, "old")
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        raise
    _remove(old)


@contextlib.contextmanager
def atomic_write(path: PathLike) -> Iterator[Path]:
    """Yield a temporary file path next to ``path``; move it onto ``path`` on success.

    The parent folder is created if needed. If the body raises, the temporary file is
    deleted, ``path`` is left untouched and the exception propagates.

    Parameters
    ----------
    path : str or path-like
        Final file name.

    Yields
    ------
    pathlib.Path
        Where the body must write, named ``.<name>.tmp-<pid>-<random>``.

    Raises
    ------
    OutputError
        If the file cannot be written (permissions, disk full, a folder in its place).
    """
    path = Path(path)
    with _writing(path):
        tmp = _temp_sibling(path, "tmp")
        try:
            yield tmp
            with tmp.open("rb") as handle:
                os.fsync(handle.fileno())
            if path.is_dir() and not path.is_symlink():
                raise IsADirectoryError(errno.EISDIR, "a folder is in its place", str(path))
            os.replace(tmp, path)
        except BaseException:
            _remove(tmp)
            raise


def write_bytes(path: PathLike, data: bytes | memoryview) -> None:
    """Write ``data`` to ``path`` atomically (nothing partial is left if the disk fills up)."""
    with atomic_write(path) as tmp, tmp.open("wb") as handle:
        handle.write(data)


@contextlib.contextmanager
def atomic_directory(path: PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``path``; put it in place of ``path`` on success.

    An existing ``path`` is swapped out in one step where the platform allows it, then
    deleted. If the body raises, the temporary folder is deleted and ``path`` is untouched.

    Parameters
    ----------
    path : str or path-like
        Final folder name.

    Yields
    ------
    pathlib.Path
        An empty folder named ``.<name>.tmp-<pid>-<random>``.

    Raises
    ------
    OutputError
        If the folder cannot be written.
    """
    path = Path(os.path.abspath(path))
    with _writing(path):
        tmp = _temp_sibling(path, "tmp")
        tmp.mkdir()
        try:
            yield tmp
            _put_in_place(tmp, path)
        except BaseException:
            _remove(tmp)
            raise


def write_json(path: PathLike, obj: Any, **options: Any) -> None:
    """Write ``obj`` to ``path`` atomically as indented UTF-8 JSON with a final newline.

    ``options`` go to :func:`json.dumps` (e.g. ``allow_nan=False``, ``default=float``).
    """
    text = json.dumps(obj, indent=2, **options) + "\n"
    write_bytes(path, text.encode("utf-8"))
