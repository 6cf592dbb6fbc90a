"""Watching a folder: classify each new spectrum-image file once its writer has finished.

A file counts as complete when its size and modification time have not changed for
``settle_s`` seconds (detector software writes a file over many calls; most do not
lock it). Hidden files (``.name``, e.g. atomic writers' temporary files) and partial
downloads (``.part``, ``.tmp``) are ignored. A file that cannot be read or classified is
reported and skipped, unless it changed meanwhile (then it is still being written and
is tried again once it settles). A file that is rewritten later is classified again.
A result is never written over a file eelsprint did not write, nor over the result of
another input with the same stem (``a.npz`` and ``a.hspy``): that input is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from eelsprint.data.io import HYPERSPY_SUFFIXES, read_spectra, write_dataset
from eelsprint.data.outputs import check_folder_output
from eelsprint.exceptions import EelsprintError, InputDataError, OutputError, first_line

if TYPE_CHECKING:
    from eelsprint.classify import FingerprintClassifier

__all__ = ["SUFFIXES", "WatchEvent", "watch"]

SUFFIXES = (".npz", *HYPERSPY_SUFFIXES)
_PARTIAL = (".part", ".tmp", ".crdownload", ".partial")


@dataclass(frozen=True)
class WatchEvent:
    """What happened to one file.

    Attributes
    ----------
    path : Path
    status : {"done", "skipped"}
    n_spectra : int
    latency_ms : float
        Preprocessing and classification of the frame (what the detector's rate competes with).
    total_ms : float
        Reading + classification + writing the result.
    output : Path or None
        The NetCDF result.
    reason : str
        Why a file was skipped.
    """

    path: Path
    status: Literal["done", "skipped"]
    n_spectra: int = 0
    latency_ms: float = 0.0
    total_ms: float = 0.0
    output: Path | None = None
    reason: str = ""

    def describe(self) -> str:
        """One line for the terminal."""
        if self.status == "skipped":
            return f"skipped {self.path.name}: {self.reason}"
        return (
            f"{self.path.name}: {self.n_spectra} spectra classified in {self.latency_ms:.1f} ms "
            f"({self.total_ms:.0f} ms with reading and writing) -> {self.output}"
        )


def _signature(path: Path) -> tuple[int, int] | None:
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def _candidates(directory: Path) -> list[tuple[Path, tuple[int, int]]]:
    """Spectrum files in ``directory`` with their (size, mtime), oldest first."""
    found = []
    for path in directory.iterdir():
        name = path.name.lower()
        if path.suffix.lower() not in SUFFIXES or name.startswith(".") or name.endswith(_PARTIAL):
            continue
        sig = _signature(path)
        if sig is not None and path.is_file():
            found.append((path, sig))
    return sorted(found, key=lambda item: (item[1][1], item[0].name))


def _claim(path: Path, out: Path, claimed: dict[Path, Path]) -> Path:
    """``out/<stem>.nc``, unless another input owns that name or a file eelsprint did not write is there."""
    target = out / f"{path.stem}.nc"
    owner = claimed.get(target, path)
    if owner != path:
        raise OutputError(f"{path}: same stem as {owner.name}, whose result is {target}; rename one")
    if target.exists() and target not in claimed:
        check_folder_output(out, [target.name])
    claimed[target] = path
    return target


def _process(
    clf: FingerprintClassifier,
    path: Path,
    out: Path,
    mode: str,
    nav_shape: tuple[int, ...] | None,
    claimed: dict[Path, Path],
) -> WatchEvent:
    target = _claim(path, out, claimed)
    start = time.perf_counter()
    spectra = read_spectra(path, nav_shape)
    begin = time.perf_counter()
    ds = clf.classify(spectra, mode=mode)
    latency = time.perf_counter() - begin
    write_dataset(ds, target)
    total = time.perf_counter() - start
    return WatchEvent(path, "done", int(ds["label"].size), 1e3 * latency, 1e3 * total, target)


def watch(
    directory: str | Path,
    clf: FingerprintClassifier,
    out: str | Path,
    *,
    once: bool = False,
    mode: str | None = None,
    nav_shape: tuple[int, ...] | None = None,
    poll_s: float = 0.25,
    settle_s: float = 1.0,
    once_timeout_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Iterator[WatchEvent]:
    """Classify every complete spectrum-image file that is or appears in ``directory``.

    Parameters
    ----------
    directory : path
        The folder the acquisition software writes into (not searched recursively).
    clf : FingerprintClassifier
        A fitted classifier.
    out : path
        Results go to ``out/<file stem>.nc``.
    once : bool
        Classify what is there (waiting for files still being written, at most
        ``once_timeout_s``) and return, instead of watching until interrupted.
    mode : {"head", "fast", "exact"}, optional
        Default: ``"head"`` if the model has a distilled head, else the model's mode
        (:meth:`FingerprintClassifier.live_mode`).
    nav_shape : tuple of int, optional
        Scan grid of every file (see :func:`eelsprint.data.io.read_spectra`); a file that
        does not fit it is skipped with the reason.
    poll_s : float
        Seconds between looks at the folder.
    settle_s : float
        Seconds a file's size and modification time must stay unchanged.
    once_timeout_s : float
        With ``once``: files still changing after this long are reported as skipped.
    sleep : callable
        Waits between polls (replaceable in tests).

    Yields
    ------
    WatchEvent
        One per file classified or skipped, as it happens.

    Raises
    ------
    InputDataError
        If ``directory`` does not exist or is not a folder.
    """
    directory, out = Path(directory), Path(out)
    if not directory.is_dir():
        raise InputDataError(f"{directory}: folder to watch not found")
    mode = clf.live_mode(mode)
    clf.classify(clf.library_.spectra[:2], mode=mode)  # warm-up: the first frame is not slower
    done: dict[Path, tuple[int, int]] = {}
    claimed: dict[Path, Path] = {}  # result -> the input it belongs to
    pending: dict[Path, tuple[tuple[int, int], float]] = {}
    started = time.monotonic()
    while True:
        now = time.monotonic()
        for path, sig in _candidates(directory):
            if done.get(path) == sig:
                continue
            seen = pending.get(path)
            if seen is None or seen[0] != sig:
                pending[path] = (sig, now)
                continue
            if now - seen[1] < settle_s:
                continue
            del pending[path]
            try:
                event = _process(clf, path, out, mode, nav_shape, claimed)
            except Exception as err:  # bad files must not stop the acquisition
                if _signature(path) != sig:  # still being written: try again once it settles
                    continue
                reason = str(err) if isinstance(err, EelsprintError) else first_line(err)
                event = WatchEvent(path, "skipped", reason=reason.removeprefix(f"{path}: "))
            done[path] = sig
            yield event
        if once and (not pending or time.monotonic() - started > once_timeout_s):
            for path in pending:
                yield WatchEvent(path, "skipped", reason=f"still being written after {once_timeout_s:.0f} s")
            return
        sleep(poll_s)
