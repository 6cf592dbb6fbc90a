"""Checks at the model's boundary: values the model can compute with, data it can learn from.

The model computes in float32. A spectrum is accepted only if every value, cast to
float32, is finite and small enough that a sum of squares over the spectrum stays finite
(:func:`float32_limit`), so no layer silently overflows to NaN.
"""

from __future__ import annotations

import itertools

import numpy as np

from eelsprint.data.preprocess import crop, resample
from eelsprint.data.spectra import Library, Spectra
from eelsprint.exceptions import InputDataError

__all__ = [
    "check_distinct_classes",
    "check_finite_result",
    "check_float32",
    "check_not_constant",
    "join_inputs",
]


def float32_limit(n_channels: int) -> float:
    """Largest |value| accepted: ``sqrt(float32 max / n_channels)`` (1.2e18 for 240 channels)."""
    return float(np.sqrt(np.finfo(np.float32).max / max(n_channels, 1)))


def _where(bad: np.ndarray, nav: tuple[int, ...]) -> str:
    rows = np.flatnonzero(bad.reshape(len(bad), -1).any(axis=1))
    first = [tuple(int(i) for i in np.unravel_index(r, nav)) if nav else () for r in rows[:3]]
    more = f" and {len(rows) - 3} more" if len(rows) > 3 else ""
    noun = "spectrum" if len(rows) == 1 else "spectra"
    return f"{len(rows)} {noun}, at index {', '.join(map(str, first))}{more}"


def check_float32(x: np.ndarray, nav: tuple[int, ...], source: str) -> None:
    """Refuse spectra that are not finite, or too large, once cast to float32.

    Parameters
    ----------
    x : ndarray of shape (n_spectra, n_channels)
        Flat spectra (any float dtype).
    nav : tuple of int
        Their navigation shape (to name the pixels).
    source : str
        Named in the error.

    Raises
    ------
    InputDataError
    """
    limit = float32_limit(x.shape[-1])
    with np.errstate(over="ignore", invalid="ignore"):
        bad = ~(np.abs(x.astype(np.float32)) <= limit)
    if bad.any():
        raise InputDataError(
            f"{source}: values beyond +-{limit:.2g} (or NaN/inf) once cast to float32, the range the model "
            f"computes in, in {_where(bad, nav)}; rescale the data (e.g. divide by the dose)"
        )


def check_not_constant(x: np.ndarray, source: str) -> None:
    """Refuse training data whose spectra are all identical (e.g. all zero)."""
    if len(x) and np.ptp(x) == 0:
        raise InputDataError(
            f"{source}: every value is {float(x.flat[0]):g}; there is nothing to learn from constant data"
        )


def check_distinct_classes(library: Library) -> None:
    """Refuse a library in which two classes have the same mean spectrum."""
    index = library.class_index
    means = [library.spectra[index == c].mean(axis=0) for c in range(len(library.classes))]
    scale = float(np.abs(library.spectra).max())
    for (a, mean_a), (b, mean_b) in itertools.combinations(enumerate(means), 2):
        if scale == 0 or np.abs(mean_a - mean_b).max() <= 1e-9 * scale:
            raise InputDataError(
                f"{library.source}: library classes '{library.classes[a]}' and '{library.classes[b]}' have "
                "identical spectra; they cannot be told apart"
            )


def check_finite_result(proba: np.ndarray, nav: tuple[int, ...], source: str) -> None:
    """Refuse non-finite class probabilities (before anything is written), naming the pixels.

    Raises
    ------
    InputDataError
    """
    bad = ~np.isfinite(proba)
    if bad.any():
        raise InputDataError(
            f"{source}: the model gave non-finite probabilities for {_where(bad, nav)}; nothing was written"
        )


def join_inputs(parts: list[Spectra], window: tuple[float, float] | None = None) -> Spectra:
    """Flatten several inputs onto the first one's energy axis, refusing to crop silently.

    Parameters
    ----------
    parts : list of Spectra
        The inputs, in order.
    window : (float, float), optional
        Energy range (eV) every input must cover; all are cropped to it. Without it, the
        inputs must cover the same range (within half a channel).

    Returns
    -------
    Spectra
        Shape ``(n_total, n_channels)``; ``source`` lists the inputs.

    Raises
    ------
    InputDataError
        If the ranges differ (and no window is given) or an input does not cover ``window``.
    """
    first = parts[0]
    if window is not None:
        for part in parts:
            if part.energy[0] > window[0] or part.energy[-1] < window[1]:
                raise InputDataError(
                    f"{part.source}: covers {part.energy[0]:g}-{part.energy[-1]:g} eV, not the whole "
                    f"--window {window[0]:g}-{window[1]:g} eV"
                )
        first = crop(first, window)
    else:
        half = 0.5 * float(first.energy[1] - first.energy[0])
        for part in parts[1:]:
            if max(abs(part.energy[0] - first.energy[0]), abs(part.energy[-1] - first.energy[-1])) > half:
                raise InputDataError(
                    f"{part.source}: covers {part.energy[0]:g}-{part.energy[-1]:g} eV but {first.source} "
                    f"covers {first.energy[0]:g}-{first.energy[-1]:g} eV; pass --window LO,HI (eV) "
                    "that every input covers"
                )
    flat = [resample(part, first.energy).flat() for part in parts]
    return Spectra(np.concatenate(flat), first.energy, ", ".join(p.source for p in parts))


def check_model_input(spectra: Spectra) -> Spectra:
    """``spectra``, unless it holds none or values float32 cannot hold (see :func:`check_float32`)."""
    if spectra.data.size == 0:
        raise InputDataError(f"{spectra.source}: holds no spectra (navigation shape {spectra.nav_shape})")
    check_float32(spectra.flat(), spectra.nav_shape, spectra.source)
    return spectra
