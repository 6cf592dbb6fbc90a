"""Atomic writes: a file or folder appears complete under its name, or not at all.

Outputs are written to a hidden temporary sibling and renamed into place, so an
interrupted run never leaves a half-written model or result that a later load reads.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["atomic_directory", "atomic_write", "write_json"]

PathLike = str | os.PathLike[str]


def _temp_sibling(path: Path, kind: str) -> Path:
    return path.with_name(f".{path.name}.{kind}-{secrets.token_hex(4)}")


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


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
        Where the body must write, named ``.<name>.tmp-<random>``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path, "tmp")
    try:
        yield tmp
        with tmp.open("rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


@contextlib.contextmanager
def atomic_directory(path: PathLike) -> Iterator[Path]:
    """Yield a fresh temporary folder next to ``path``; put it in place of ``path`` on success.

    An existing ``path`` is renamed aside, the new folder renamed in, then the old one
    deleted. If the body raises, the temporary folder is deleted and ``path`` is untouched.

    Parameters
    ----------
    path : str or path-like
        Final folder name.

    Yields
    ------
    pathlib.Path
        An empty folder named ``.<name>.tmp-<random>``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_sibling(path, "tmp")
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        _remove(tmp)
        raise
    if not (path.exists() or path.is_symlink()):
        os.replace(tmp, path)
        return
    old = _temp_sibling(path, "old")
    os.replace(path, old)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.replace(old, path)
        _remove(tmp)
        raise
    _remove(old)


def write_json(path: PathLike, obj: Any, **options: Any) -> None:
    """Write ``obj`` to ``path`` atomically as indented UTF-8 JSON with a final newline.

    ``options`` go to :func:`json.dumps` (e.g. ``allow_nan=False``, ``default=float``).
    """
    with atomic_write(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, **options) + "\n", encoding="utf-8")
