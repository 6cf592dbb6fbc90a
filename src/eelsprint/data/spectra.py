"""The two data containers: :class:`Spectra` (measured) and :class:`Library` (fingerprints).

Both validate themselves on construction (finite values, a strictly increasing
energy axis in eV that matches the channels) and name their ``source`` in every error.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from eelsprint.exceptions import InputDataError

__all__ = ["Library", "NavAxes", "Spectra", "library_from_arrays", "spectra_from_array"]


def _check_finite(values: np.ndarray, what: str, source: str) -> None:
    bad = ~np.isfinite(values)
    count = int(bad.sum())
    if count:
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        raise InputDataError(
            f"{source}: {count} non-finite value(s) (NaN/inf) in the {what}, first at index {first}"
        )


def _as_float(values: Any, what: str, source: str) -> np.ndarray:
    """Convert to a float64 array, refusing text, objects and complex numbers."""
    array = np.asarray(values)
    if array.dtype.kind not in "biuf":
        raise InputDataError(f"{source}: {what} must be real numbers, got dtype {array.dtype}")
    return array.astype(np.float64, copy=False)


def _check_energy(energy: np.ndarray, n_channels: int, source: str) -> None:
    if energy.ndim != 1:
        raise InputDataError(f"{source}: energy axis must be 1-D, got shape {energy.shape}")
    if energy.size != n_channels:
        raise InputDataError(
            f"{source}: energy axis has {energy.size} values but the spectra have {n_channels} channels"
        )
    if n_channels < 2:
        raise InputDataError(f"{source}: need at least 2 energy channels, got {n_channels}")
    _check_finite(energy, "energy axis", source)
    steps = np.diff(energy)
    if not np.all(steps > 0):
        first = int(np.argmax(steps <= 0))
        raise InputDataError(
            f"{source}: energy axis must be strictly increasing "
            f"(channel {first + 1}: {energy[first + 1]} eV after {energy[first]} eV)"
        )


class NavAxes:
    """What spectra of shape ``(*nav_shape, n_channels)`` know of their axes (in memory or lazy)."""

    data: Any
    source: str

    @property
    def nav_shape(self) -> tuple[int, ...]:
        """Shape of the scan (``()`` for a single spectrum), in numpy order."""
        return tuple(self.data.shape[:-1])

    @property
    def n_channels(self) -> int:
        """Number of energy channels."""
        return int(self.data.shape[-1])

    def _check_grid(self, nav_shape: tuple[int, ...]) -> None:
        n, wanted = math.prod(self.nav_shape), math.prod(nav_shape)
        if wanted != n or min(nav_shape, default=1) < 1:
            grid = ",".join(map(str, nav_shape))
            raise InputDataError(
                f"{self.source}: navigation shape {grid} holds {wanted} spectra, but there are {n}"
            )


@dataclass(frozen=True, eq=False)
class Spectra(NavAxes):
    """Spectra on a common energy axis, with any navigation (scan) shape.

    Attributes
    ----------
    data : numpy.ndarray
        Intensities, shape ``(*nav_shape, n_channels)``, float64, all finite.
    energy : numpy.ndarray
        Energy of each channel (eV), shape ``(n_channels,)``, strictly increasing.
    source : str
        Where the spectra came from (a file name), used in error messages.
    """

    data: np.ndarray
    energy: np.ndarray
    source: str = "<array>"

    def __post_init__(self) -> None:
        data = _as_float(self.data, "spectra", self.source)
        energy = _as_float(self.energy, "energy axis", self.source)
        if data.ndim < 1:
            raise InputDataError(f"{self.source}: spectra must have at least one (energy) axis")
        _check_energy(energy, data.shape[-1], self.source)
        _check_finite(data, "spectra", self.source)
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "energy", energy)

    def flat(self) -> np.ndarray:
        """All spectra as one ``(N, n_channels)`` array (a view where possible)."""
        return self.data.reshape(-1, self.n_channels)

    def with_nav_shape(self, nav_shape: tuple[int, ...]) -> Spectra:
        """The same spectra on another scan grid, in numpy order (e.g. ``(24, 30, 19)``: frame, y, x).

        Raises
        ------
        InputDataError
            If the grid does not hold exactly as many spectra as there are.
        """
        self._check_grid(nav_shape)
        return Spectra(self.data.reshape(*nav_shape, self.n_channels), self.energy, self.source)


@dataclass(frozen=True, eq=False)
class Library:
    """Labelled fingerprint spectra; several spectra may share a label.

    Attributes
    ----------
    spectra : numpy.ndarray
        Shape ``(n, n_channels)``, float64, finite (all-zero spectra are allowed).
    energy : numpy.ndarray
        Shape ``(n_channels,)`` in eV, strictly increasing.
    labels : numpy.ndarray
        Shape ``(n,)``, the class name of each spectrum (numpy str array).
    source : str
        Where the library came from, used in error messages.
    min_classes : int
        Fewest distinct labels accepted: 2 to fit a model, 1 for fingerprints added by an update.
    """

    spectra: np.ndarray
    energy: np.ndarray
    labels: np.ndarray
    source: str = "<array>"
    min_classes: int = field(default=2, repr=False, compare=False)

    def __post_init__(self) -> None:
        spectra = _as_float(self.spectra, "library spectra", self.source)
        if spectra.ndim != 2:
            raise InputDataError(
                f"{self.source}: library spectra must have shape (n, channels), got {spectra.shape}"
            )
        energy = _as_float(self.energy, "energy axis", self.source)
        _check_energy(energy, spectra.shape[1], self.source)
        _check_finite(spectra, "library spectra", self.source)
        labels = np.asarray(self.labels)
        if labels.dtype.kind not in "USO" or labels.ndim != 1 or labels.size != spectra.shape[0]:
            raise InputDataError(
                f"{self.source}: need one text label per spectrum ({spectra.shape[0]}), "
                f"got shape {labels.shape} of dtype {labels.dtype}"
            )
        labels = np.array([str(label).strip() for label in labels], dtype=str)
        if any(label == "" for label in labels):
            raise InputDataError(f"{self.source}: spectrum {list(labels).index('')} has an empty label")
        classes = list(dict.fromkeys(labels.tolist()))
        if len(classes) < self.min_classes:
            need = "two" if self.min_classes == 2 else str(self.min_classes)
            raise InputDataError(
                f"{self.source}: library has only one class '{classes[0]}'; need at least {need}"
            )
        object.__setattr__(self, "spectra", spectra)
        object.__setattr__(self, "energy", energy)
        object.__setattr__(self, "labels", labels)

    @property
    def classes(self) -> np.ndarray:
        """Distinct labels in order of first appearance (numpy str array)."""
        return np.array(list(dict.fromkeys(self.labels.tolist())), dtype=str)

    @property
    def class_index(self) -> np.ndarray:
        """Index of each spectrum's label into :attr:`classes`, shape ``(n,)``, int."""
        lookup = {name: i for i, name in enumerate(self.classes.tolist())}
        return np.array([lookup[label] for label in self.labels.tolist()], dtype=np.int64)

    @property
    def n_channels(self) -> int:
        """Number of energy channels."""
        return int(self.spectra.shape[1])

    def class_means(self) -> np.ndarray:
        """Mean spectrum of each class, shape ``(n_classes, n_channels)``, in :attr:`classes` order."""
        index = self.class_index
        return np.stack([self.spectra[index == c].mean(0) for c in range(len(self.classes))])


def spectra_from_array(x: Any, energy: Any, source: str = "<array>") -> Spectra:
    """Wrap an array of spectra, shape ``(*nav, channels)`` or ``(*nav, channels, 1)``.

    Parameters
    ----------
    x : array_like
        Spectra with energy on the last axis; a trailing singleton axis is dropped.
    energy : array_like
        Energy of each channel in eV, strictly increasing.
    source : str
        Name used in error messages.

    Returns
    -------
    Spectra

    Raises
    ------
    InputDataError
        If shapes disagree or the values are not finite numbers.
    """
    data = _as_float(x, "spectra", source)
    axis = _as_float(energy, "energy axis", source)
    if data.ndim >= 2 and data.shape[-1] == 1 and axis.size == data.shape[-2]:
        data = data[..., 0]
    return Spectra(data, axis, source)


def library_from_arrays(
    spectra: Any, energy: Any, labels: Any, source: str = "<array>", min_classes: int = 2
) -> Library:
    """Build a :class:`Library`; spectra of shape ``(n, channels, 1)`` are squeezed.

    Parameters
    ----------
    spectra : array_like
        Shape ``(n, channels)`` (or ``(n, channels, 1)``).
    energy : array_like
        Shape ``(channels,)`` in eV.
    labels : array_like of str
        Shape ``(n,)``; several spectra may share a label.
    source : str
        Name used in error messages.
    min_classes : int
        Fewest distinct labels accepted (1 for fingerprints added to a fitted model's library).

    Returns
    -------
    Library
    """
    data = _as_float(spectra, "library spectra", source)
    if data.ndim == 3 and data.shape[-1] == 1:
        data = data[..., 0]
    return Library(data, _as_float(energy, "energy axis", source), np.asarray(labels), source, min_classes)
