"""Which existing paths an output may replace: never what the user did not ask to replace.

An existing output path is replaced only if eelsprint wrote it:

- a model directory (``manifest.json`` and ``model.json``; see :mod:`eelsprint.data.store`);
- an export folder (``manifest.json`` and ``export.json``);
- a result file ``<stem>.nc`` (NetCDF whose global attributes hold ``classes`` and ``integration``),
  or a result store ``<stem>.zarr`` (a Zarr group with those attributes);
- a pixel table of ``eelsprint suggest`` (a CSV whose header starts with ``rank,``);
- a report's ``report.html``, ``metrics.json`` and ``posterior.nc``, when that folder's
  ``metrics.json`` is an eelsprint report's (``n_pixels`` and ``classes``).

Anything else is refused with :class:`~eelsprint.exceptions.OutputError` unless the user
passes ``overwrite``. Even then, a folder that holds an input, the current folder and its
parents are never replaced.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path

from eelsprint.data.resultstore import is_result_store
from eelsprint.exceptions import OutputError

__all__ = ["REPORT_FILES", "check_folder_output", "check_output", "check_stems", "is_result_file"]

#: What ``eelsprint report`` writes into its folder.
REPORT_FILES = ("report.html", "metrics.json", "posterior.nc")

_HINT = "choose another path, or pass --overwrite to replace it"


def is_result_file(path: Path) -> bool:
    """True if ``path`` is a NetCDF result written by eelsprint (``classify``/``watch``)."""
    try:
        import h5py

        with h5py.File(path, "r") as handle:
            return {"classes", "integration"} <= set(handle.attrs)
    except Exception:  # not HDF5, unreadable: not ours
        return False


def _is_report_folder(folder: Path) -> bool:
    try:
        metrics = json.loads((folder / "metrics.json").read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError):
        return False
    return isinstance(metrics, dict) and {"n_pixels", "classes"} <= set(metrics)


def _is_ours(path: Path, kind: str) -> bool:
    if kind == "result":
        return path.is_file() and is_result_file(path)
    if kind == "table":  # a pixel table of ``eelsprint suggest``
        try:
            with path.open(encoding="utf-8") as handle:
                return handle.readline().startswith("rank,")
        except (OSError, UnicodeDecodeError):
            return False
    marker = {"model": "model.json", "export": "export.json"}[kind]
    return path.is_dir() and all((path / name).is_file() for name in ("manifest.json", marker))


def _protect(path: Path, inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse, even with ``overwrite``, to replace the current folder, a parent of it, or an input."""
    target = path.resolve()
    if Path.cwd().resolve().is_relative_to(target):
        raise OutputError(f"{path}: is the current folder or one of its parents; choose a new path")
    for item in inputs:
        if Path(item).resolve().is_relative_to(target):
            raise OutputError(f"{path}: holds the input {item}; choose another path")


def check_output(
    path: str | os.PathLike[str],
    kind: str,
    *,
    overwrite: bool = False,
    inputs: Iterable[str | os.PathLike[str]] = (),
) -> Path:
    """Check that writing output ``kind`` at ``path`` destroys nothing the user did not ask to replace.

    Parameters
    ----------
    path : path
        Where the output will go.
    kind : {"model", "export", "result", "table"}
        What is written: a model directory, an export folder, a result file or a ``suggest`` table.
    overwrite : bool
        Replace whatever is there (the user said so).
    inputs : iterable of path
        Files the command reads; a folder holding one is never replaced.

    Returns
    -------
    Path
        ``path``.

    Raises
    ------
    OutputError
        If ``path`` exists and is not an eelsprint output of ``kind`` (and not ``overwrite``),
        or would replace the current folder or an input.
    """
    path = Path(path)
    if not (path.exists() or path.is_symlink()):
        return path
    _protect(path, inputs)
    if overwrite or _is_ours(path, kind):
        return path
    what = "a folder" if path.is_dir() else "a file"
    ours = {"model": "an eelsprint model directory", "export": "an eelsprint export",
            "table": "a table written by eelsprint suggest"}  # fmt: skip
    raise OutputError(f"{path}: exists and is {what}, not {ours.get(kind, 'an eelsprint result')}; {_HINT}")


def check_folder_output(
    folder: str | os.PathLike[str], names: Sequence[str], *, overwrite: bool = False, report: bool = False
) -> Path:
    """Check an output folder and the files ``names`` to be written into it.

    With ``report``, the files may be replaced if the folder holds an eelsprint report;
    otherwise each existing file must be an eelsprint result (:func:`is_result_file`).

    Raises
    ------
    OutputError
        If ``folder`` is a file, or an existing file or folder in it is not eelsprint's.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"{folder}: exists and is a file, expected a folder for the results")
    ours = report and _is_report_folder(folder)
    for name in names:
        target = folder / name
        if not (target.exists() or target.is_symlink()):
            continue
        if target.suffix == ".zarr" and target.is_dir() and not target.is_symlink():
            if overwrite or is_result_store(target):  # a Zarr result store of eelsprint classify
                continue
            raise OutputError(f"{target}: exists and is not a result store written by eelsprint; {_HINT}")
        if target.is_dir() and not target.is_symlink():
            raise OutputError(f"{target}: a folder is in the place of the output file; remove or rename it")
        if not (overwrite or ours or (not report and is_result_file(target))):
            raise OutputError(f"{target}: exists and was not written by eelsprint; {_HINT}")
    return folder


def check_stems(paths: Sequence[str | os.PathLike[str]]) -> None:
    """Refuse inputs whose results would share one name ``<stem>.nc``.

    Raises
    ------
    OutputError
        Naming both inputs.
    """
    seen: dict[str, Path] = {}
    for item in map(Path, paths):
        other = seen.setdefault(item.stem, item)
        if other != item:
            raise OutputError(
                f"{item}: has the same stem as {other}, so both results would be {item.stem}.nc; "
                "rename one or classify them separately"
            )
