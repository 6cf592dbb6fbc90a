"""Reading spectra and fingerprint libraries, and writing results safely.

The only module that touches HyperSpy / RosettaSciIO, imported lazily (slow, noisy); their
warnings and log lines are silenced, an error's message kept. Every problem with a user's file
raises :class:`~eelsprint.exceptions.InputDataError`, one line starting with the file's name.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from eelsprint.data.guard import guarded_read
from eelsprint.data.lazy import DEFAULT_CHUNK_BYTES, LazySpectra, open_array_file
from eelsprint.data.libraries import MXENE_LABELS, read_library_csv, read_mxene_library
from eelsprint.data.netcdf import read_dataset, write_dataset
from eelsprint.data.spectra import Library, Spectra, _as_float, library_from_arrays, spectra_from_array
from eelsprint.exceptions import InputDataError, first_line

__all__ = [
    "HYPERSPY_SUFFIXES",
    "MXENE_LABELS",
    "as_spectra",
    "library_from_arrays",
    "open_spectra",
    "read_dataset",
    "read_library",
    "read_mxene_library",
    "read_spectra",
    "spectra_from_array",
    "spectra_from_signal",
    "write_dataset",
]

#: File endings read through ``hyperspy.api.load``.
HYPERSPY_SUFFIXES = (".hspy", ".hdf5", ".dm3", ".dm4", ".msa")

PathLike = str | os.PathLike[str]


# --------------------------------------------------------------------------- HyperSpy


class _Capture(logging.Handler):
    """Keeps the first ERROR message HyperSpy or RosettaSciIO logs (for eelsprint's own line)."""

    first = ""

    def emit(self, record: logging.LogRecord) -> None:
        self.first = self.first or first_line(Exception(record.getMessage()))


@contextlib.contextmanager
def _quiet() -> Iterator[_Capture]:
    """Silence warnings and HyperSpy's/RosettaSciIO's log lines while they run; capture errors."""
    capture = _Capture(logging.ERROR)
    loggers = [logging.getLogger(name) for name in ("hyperspy", "rsciio", "exspy")]
    saved = [(lg.handlers, lg.propagate) for lg in loggers]
    previous = logging.root.manager.disable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        logging.disable(logging.WARNING)
        for lg in loggers:
            lg.handlers, lg.propagate = [capture], False
        try:
            yield capture
        finally:
            for lg, (handlers, propagate) in zip(loggers, saved, strict=True):
                lg.handlers, lg.propagate = handlers, propagate
            logging.disable(previous)


def _hyperspy_load(path: Path | None, lazy: bool = False) -> Any:
    """``hs.load(path)`` with HyperSpy's output silenced (``None``: only import HyperSpy)."""
    with _quiet() as capture:
        try:
            import hyperspy.api as hs

            loaded = hs.load(path, lazy=lazy) if path is not None else 0
        except Exception as err:  # readers fail in many ways
            reason = first_line(err)
            if capture.first and capture.first not in reason:
                reason = f"{reason}: {capture.first}"
            raise InputDataError(f"{path}: cannot read file ({reason})") from None
        if loaded is None or (isinstance(loaded, list) and not loaded):
            reason = capture.first or "no signal found"
            raise InputDataError(f"{path}: cannot read file ({reason})")
        return loaded


def _signal_energy(signal: Any, source: str) -> np.ndarray:
    """A HyperSpy signal's energy axis in eV, checked: 1-D signal, uniform, in eV or keV."""
    axes = signal.axes_manager
    if axes.signal_dimension != 1:
        raise InputDataError(
            f"{source}: expected a 1-D spectrum signal, got signal dimension {axes.signal_dimension}"
        )
    axis = axes.signal_axes[0]
    if not getattr(axis, "is_uniform", True):
        raise InputDataError(f"{source}: energy axis is not uniform; resample it onto even steps first")
    units = axis.units.strip() if isinstance(axis.units, str) else ""
    factors = {"eV": 1.0, "keV": 1000.0}
    if units not in factors:
        raise InputDataError(
            f"{source}: has no energy axis in eV (signal axis units are {units or 'unset'!r})"
        )
    return np.asarray(axis.axis, dtype=np.float64) * factors[units]


def _signal_to_spectra(signal: Any, source: str) -> Spectra:
    """Check a HyperSpy signal and convert it; navigation shape kept in numpy order."""
    energy = _signal_energy(signal, source)
    return Spectra(_as_float(np.asarray(signal.data), "spectra", source), energy, source)


def spectra_from_signal(signal: Any) -> Spectra:
    """Convert an in-memory HyperSpy ``Signal1D`` (e.g. an ``EELSSpectrum``).

    Parameters
    ----------
    signal : hyperspy.signals.Signal1D
        A signal with one uniform signal axis in eV or keV.

    Returns
    -------
    Spectra
        Data in HyperSpy's numpy order ``(*nav, channels)``; energy in eV.

    Raises
    ------
    InputDataError
        If the signal is not 1-D, its axis is not uniform or not in eV, or it holds NaN/inf.
    """
    title = getattr(getattr(signal, "metadata", None), "General", None)
    source = f"<signal {getattr(title, 'title', '') or 'untitled'}>"
    with _quiet():
        return _signal_to_spectra(signal, source)


# --------------------------------------------------------------------------- spectra


def _existing_file(path: PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputDataError(f"{path}: file not found")
    if not path.is_file():
        raise InputDataError(f"{path}: is not a file")
    return path


def _load_npz(path: Path, keys: Sequence[str], optional: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The arrays ``keys`` (all required) and those of ``optional`` that the file holds."""
    try:
        # open the file here: np.load leaks its own handle when the zip archive is corrupt
        with path.open("rb") as handle, np.load(handle, allow_pickle=False) as npz:
            missing = [key for key in keys if key not in npz.files]
            if missing:
                raise InputDataError(f"{path}: missing array(s) {missing}; found {sorted(npz.files)}")
            wanted = [*keys, *(key for key in optional if key in npz.files)]
            return {key: np.asarray(npz[key]) for key in wanted}
    except InputDataError:
        raise
    except Exception as err:  # readers fail in many ways
        raise InputDataError(f"{path}: cannot read .npz file ({first_line(err)})") from None


def as_spectra(x: Any, energy: Any = None, source: str = "<array>") -> Spectra:
    """Accept :class:`Spectra`, a HyperSpy ``Signal1D`` or an array with its energy axis.

    Parameters
    ----------
    x : Spectra, hyperspy.signals.Signal1D or array_like
        The spectra; an array has energy on its last axis.
    energy : array_like, optional
        Energy axis (eV); required for an array, and if given with ``Spectra`` it must match.
    source : str
        Name used in error messages for an array.

    Returns
    -------
    Spectra

    Raises
    ------
    InputDataError
        If an array comes without an energy axis, or the given axis disagrees with ``x``'s.
    """
    if isinstance(x, Spectra):
        spectra = x
    elif hasattr(x, "axes_manager"):
        spectra = spectra_from_signal(x)
    elif energy is None:
        raise InputDataError(
            f"{source}: got an array of shape {np.shape(x)} without its energy axis; "
            "pass energy=<(n_channels,) eV>"
        )
    else:
        return spectra_from_array(x, energy, source)
    if energy is not None and not (
        np.shape(energy) == spectra.energy.shape and np.allclose(energy, spectra.energy, rtol=0, atol=1e-9)
    ):
        raise InputDataError(
            f"{spectra.source}: the energy given disagrees with the spectra's own energy axis"
        )
    return spectra


def read_spectra(path: PathLike, nav_shape: Sequence[int] | None = None) -> Spectra:
    """Read spectra from ``.npz`` (arrays ``x``, ``energy``, optional ``shape``) or a HyperSpy file.

    Parameters
    ----------
    path : str or path-like
        ``.npz``, ``.hspy``, ``.hdf5``, ``.dm3``, ``.dm4`` or ``.msa``.
    nav_shape : sequence of int, optional
        The scan grid in numpy order, e.g. ``(24, 30, 19)`` (frame, y, x) for a flat file
        of 13,680 spectra. Default: the ``.npz``'s ``shape`` array when it has one, else
        the navigation shape as stored.

    Returns
    -------
    Spectra
        Navigation shape ``nav_shape`` or as stored (HyperSpy's numpy order); energy in eV.

    Raises
    ------
    InputDataError
        Missing, unreadable or unsupported file, not exactly one 1-D signal, an energy
        axis that is non-uniform or not in eV, NaN/inf values, or a ``nav_shape`` (or
        ``shape`` array) that does not hold exactly the file's number of spectra.
    """
    spectra = _read_spectra(_existing_file(path))
    if nav_shape is not None:
        return spectra.with_nav_shape(tuple(int(n) for n in nav_shape))
    return spectra


def _read_spectra(path: Path) -> Spectra:
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays = _load_npz(path, ("x", "energy"), optional=("shape",))
        spectra = _not_empty(spectra_from_array(arrays["x"], arrays["energy"], str(path)))
        if "shape" not in arrays:
            return spectra
        shape = arrays["shape"]
        if shape.ndim != 1 or shape.dtype.kind not in "iu":
            raise InputDataError(f"{path}: array 'shape' must be 1-D integers (the scan grid), got {shape!r}")
        return spectra.with_nav_shape(tuple(int(n) for n in shape))
    if suffix not in HYPERSPY_SUFFIXES:
        supported = ", ".join((".npz", *HYPERSPY_SUFFIXES))
        raise InputDataError(f"{path}: unsupported file type {path.suffix!r}; expected one of {supported}")
    _hyperspy_load(None)  # imported once, before a fork; the HDF5 library can hang on a corrupt file
    return guarded_read(_read_hyperspy, path) if suffix in (".hspy", ".hdf5") else _read_hyperspy(path)


def _one_signal(path: Path, lazy: bool = False) -> Any:
    loaded = _hyperspy_load(path, lazy)
    if isinstance(loaded, list):
        if len(loaded) != 1:
            raise InputDataError(f"{path}: file holds {len(loaded)} signals; expected exactly one")
        loaded = loaded[0]
    return loaded


def _read_hyperspy(path: Path) -> Spectra:
    loaded = _one_signal(path)
    with _quiet():
        return _not_empty(_signal_to_spectra(loaded, str(path)))


def open_spectra(
    path: PathLike, nav_shape: Sequence[int] | None = None, chunk_bytes: int | None = DEFAULT_CHUNK_BYTES
) -> LazySpectra:
    """Open spectra lazily: nothing is read until a chunk is asked for (out-of-core work).

    Parameters
    ----------
    path : str or path-like
        A HyperSpy file (``.hspy``, ``.zspy``, ``.hdf5``, ``.dm3``, ``.dm4``, ``.msa``, opened
        with ``lazy=True``), or ``.npz`` (memory-mapped when uncompressed), a Zarr store
        (``.zarr``) or NetCDF file (``.nc``) with arrays ``x``, ``energy`` and optional ``shape``.
    nav_shape : sequence of int, optional
        The scan grid, as in :func:`read_spectra`.
    chunk_bytes : int or None
        Bytes of spectra per chunk (navigation axes only; ~100 MB by default). ``None``
        keeps the file's own chunks, for a caller that rechunks once itself (rechunking twice
        reads each chunk of the first rechunking whole).

    Returns
    -------
    LazySpectra

    Raises
    ------
    InputDataError
        As :func:`read_spectra`; non-finite values are found when their chunk is read.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix in (".npz", ".zarr", ".nc"):
        if not path.exists():
            raise InputDataError(f"{path}: file not found")
        x, energy, shape, stored = open_array_file(path)
        lazy = LazySpectra(x, energy, str(path), stored)
        nav_shape = nav_shape if nav_shape is not None or shape is None else shape
    elif suffix in (*HYPERSPY_SUFFIXES, ".zspy"):
        signal = _one_signal(path if suffix == ".zspy" else _existing_file(path), lazy=True)
        with _quiet():
            lazy = LazySpectra(signal.data, _signal_energy(signal, str(path)), str(path))
    else:
        raise InputDataError(f"{path}: unsupported file type {path.suffix!r} for lazy reading")
    if nav_shape is not None:
        lazy = lazy.with_nav_shape(tuple(int(n) for n in nav_shape))
    return lazy if chunk_bytes is None else lazy.rechunk(chunk_bytes)


def _not_empty(spectra: Spectra) -> Spectra:
    if spectra.data.size == 0:
        raise InputDataError(f"{spectra.source}: holds no spectra (navigation shape {spectra.nav_shape})")
    return spectra


# --------------------------------------------------------------------------- libraries


def read_library(path: PathLike, *, min_classes: int = 2) -> Library:
    """Read a fingerprint library.

    Parameters
    ----------
    path : str or path-like
        ``.npz`` with arrays ``energy``, ``spectra`` (n, channels) and ``labels`` (n,);
        ``.csv`` whose first column is energy (eV) and each further column one spectrum,
        headed by its label (repeated labels allowed); or a folder in the paper's release
        format (see :func:`read_mxene_library`).
    min_classes : int
        Fewest distinct labels accepted (1 to read fingerprints to add to a fitted model).

    Returns
    -------
    Library

    Raises
    ------
    InputDataError
        Missing, unreadable or unsupported file, inconsistent shapes, NaN/inf, or fewer
        than ``min_classes`` classes.
    """
    path = Path(path)
    if path.is_dir():
        return read_mxene_library(path)
    path = _existing_file(path)
    suffix = path.suffix.lower()
    if suffix == ".npz":
        arrays = _load_npz(path, ("energy", "spectra", "labels"))
        spectra, energy, labels = arrays["spectra"], arrays["energy"], arrays["labels"]
        return library_from_arrays(spectra, energy, labels, str(path), min_classes)
    if suffix == ".csv":
        return read_library_csv(path, min_classes)
    raise InputDataError(f"{path}: unsupported library file type {path.suffix!r}; expected .npz or .csv")
