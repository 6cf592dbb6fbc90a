"""Vectorised preprocessing of spectra: crop, rebin, align, background, normalise, PCA target.

Every step works on the whole array at once (no per-pixel Python loops) and is
opt-in through :class:`~eelsprint.config.PreprocessConfig`.
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.decomposition import PCA

from eelsprint.config import PreprocessConfig
from eelsprint.data.spectra import Library, Spectra
from eelsprint.exceptions import InputDataError

__all__ = [
    "align",
    "crop",
    "library_on_axis",
    "log",
    "normalise_array",
    "overlap",
    "pca_denoise",
    "preprocess",
    "rebin",
    "resample",
    "shift_spectra",
    "subtract_power_law",
]

log = logging.getLogger(__name__)


def crop(spectra: Spectra, window: tuple[float, float]) -> Spectra:
    """Keep the channels with ``window[0] <= energy <= window[1]``.

    Raises
    ------
    InputDataError
        If fewer than 8 channels of the data fall inside the window.
    """
    keep = (spectra.energy >= window[0]) & (spectra.energy <= window[1])
    if keep.sum() < 8:
        raise InputDataError(
            f"{spectra.source}: window {window[0]:g}-{window[1]:g} eV is outside the data "
            f"({spectra.energy[0]:g}-{spectra.energy[-1]:g} eV)"
        )
    return Spectra(spectra.data[..., keep], spectra.energy[keep], spectra.source)


def rebin(spectra: Spectra, factor: int) -> Spectra:
    """Sum groups of ``factor`` neighbouring channels (a trailing remainder is dropped)."""
    if factor == 1:
        return spectra
    n = spectra.n_channels // factor * factor
    data = spectra.data[..., :n].reshape(*spectra.nav_shape, n // factor, factor).sum(-1)
    return Spectra(data, spectra.energy[:n].reshape(-1, factor).mean(-1), spectra.source)


def shift_spectra(data: np.ndarray, energy: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """Shift each spectrum by ``shifts`` eV (positive moves features to higher energy).

    Linear interpolation on a uniform axis, edge values held. ``data`` is
    ``(N, C)`` and ``shifts`` ``(N,)``.
    """
    step = energy[1] - energy[0]
    position = np.arange(data.shape[-1])[None, :] - shifts[:, None] / step
    position = np.clip(position, 0, data.shape[-1] - 1)
    low = np.floor(position).astype(int)
    high = np.minimum(low + 1, data.shape[-1] - 1)
    frac = position - low
    return (1 - frac) * np.take_along_axis(data, low, -1) + frac * np.take_along_axis(data, high, -1)


def align(spectra: Spectra, peak_window: tuple[float, float], target: float | None = None) -> Spectra:
    """Shift every spectrum so that its maximum inside ``peak_window`` lands on ``target``.

    The peak position is refined to sub-channel precision with a parabola
    through the maximum and its neighbours.
    """
    inside = np.flatnonzero((spectra.energy >= peak_window[0]) & (spectra.energy <= peak_window[1]))
    if inside.size < 3:
        raise InputDataError(f"{spectra.source}: alignment window {peak_window} eV holds < 3 channels")
    flat = spectra.flat()
    idx = inside[0] + np.argmax(flat[:, inside], axis=1)
    idx = np.clip(idx, 1, spectra.n_channels - 2)
    rows = np.arange(flat.shape[0])
    left, mid, right = flat[rows, idx - 1], flat[rows, idx], flat[rows, idx + 1]
    curvature = left - 2 * mid + right
    offset = np.where(curvature < 0, 0.5 * (left - right) / np.where(curvature < 0, curvature, -1), 0.0)
    step = spectra.energy[1] - spectra.energy[0]
    peak = spectra.energy[idx] + np.clip(offset, -0.5, 0.5) * step
    goal = 0.5 * (peak_window[0] + peak_window[1]) if target is None else target
    shifted = shift_spectra(flat, spectra.energy, goal - peak)
    return Spectra(shifted.reshape(spectra.data.shape), spectra.energy, spectra.source)


def subtract_power_law(spectra: Spectra, window: tuple[float, float]) -> Spectra:
    """Fit ``A * E**-r`` by least squares on log counts in ``window`` and subtract it.

    Channels with non-positive counts in the window are left out of the fit of
    that spectrum; a spectrum with fewer than 3 positive channels keeps a zero
    background.
    """
    inside = (spectra.energy >= window[0]) & (spectra.energy <= window[1])
    if inside.sum() < 3:
        raise InputDataError(
            f"{spectra.source}: background window {window[0]:g}-{window[1]:g} eV is outside the data "
            f"({spectra.energy[0]:g}-{spectra.energy[-1]:g} eV)"
        )
    flat = spectra.flat()
    y = flat[:, inside]
    ok = y > 0
    logx = np.log(spectra.energy[inside])[None, :] * ok
    logy = np.log(np.where(ok, y, 1.0)) * ok
    n = ok.sum(1)
    sx, sy = logx.sum(1), logy.sum(1)
    sxx, sxy = (logx**2).sum(1), (logx * logy).sum(1)
    denom = n * sxx - sx**2
    valid = (n >= 3) & (np.abs(denom) > 1e-12)
    slope = np.where(valid, (n * sxy - sx * sy) / np.where(valid, denom, 1.0), 0.0)
    intercept = np.where(valid, (sy - slope * sx) / np.maximum(n, 1), -np.inf)
    background = np.exp(intercept[:, None] + slope[:, None] * np.log(spectra.energy)[None, :])
    return Spectra((flat - background).reshape(spectra.data.shape), spectra.energy, spectra.source)


def normalise_array(
    data: np.ndarray, energy: np.ndarray, mode: str, window: tuple[float, float] | None
) -> np.ndarray:
    """Divide spectra ``(..., C)`` by their area (``"area"``) or the integral over ``window`` (``"edge"``)."""
    if mode == "none":
        return data
    keep = np.ones(energy.shape, bool) if mode == "area" else (energy >= window[0]) & (energy <= window[1])  # type: ignore[index]
    if keep.sum() < 2:
        raise InputDataError(f"normalisation window {window} eV holds fewer than 2 channels")
    area = np.trapezoid(data[..., keep], energy[keep], axis=-1)[..., None]
    scale = np.where(np.abs(area) > 1e-12, area, 1.0)
    return data / scale


def preprocess(spectra: Spectra, config: PreprocessConfig) -> Spectra:
    """Apply the configured steps in order: background, crop, rebin, align, normalise.

    The power law is fitted on its pre-edge window of the uncropped spectra, as
    an EELS user expects: ``background_window`` may lie outside ``window``.
    With the default config nothing changes.
    """
    if config.background_window is not None:
        spectra = subtract_power_law(spectra, config.background_window)
    if config.window is not None:
        spectra = crop(spectra, config.window)
    spectra = rebin(spectra, config.rebin)
    if config.align_peak is not None:
        spectra = align(spectra, config.align_peak, config.align_to)
    if config.normalise != "none":
        data = normalise_array(spectra.data, spectra.energy, config.normalise, config.normalise_window)
        spectra = Spectra(data, spectra.energy, spectra.source)
    return spectra


def library_on_axis(
    library: Library, energy: np.ndarray, config: PreprocessConfig, measured: bool = False
) -> Library:
    """Interpolate the library onto the data's energy axis over their overlap, then normalise it.

    A theory library (the default) is background-free and aligned, so only the
    normalisation step of ``config`` applies to it. A ``measured`` library of
    reference spectra first gets the data's background subtraction and alignment
    (on its own energy axis, before interpolation). Data channels outside the
    library's range are returned as zero-free by the caller cropping to :func:`overlap`.

    Raises
    ------
    InputDataError
        If the two energy ranges do not overlap.
    """
    if measured:
        library = _preprocess_measured(library, config)
    low, high = overlap(library, energy)
    keep = (energy >= low) & (energy <= high)
    spectra = np.stack([np.interp(energy[keep], library.energy, row) for row in library.spectra])
    spectra = normalise_array(spectra, energy[keep], config.normalise, config.normalise_window)
    return Library(spectra, energy[keep], library.labels, library.source, library.min_classes)


def _preprocess_measured(library: Library, config: PreprocessConfig) -> Library:
    """Background subtraction and alignment of measured reference spectra, as for the data."""
    spectra = Spectra(library.spectra, library.energy, library.source)
    if config.background_window is not None:
        spectra = subtract_power_law(spectra, config.background_window)
    if config.align_peak is not None:
        spectra = align(spectra, config.align_peak, config.align_to)
    return Library(spectra.data, library.energy, library.labels, library.source, library.min_classes)


def overlap(library: Library, energy: np.ndarray) -> tuple[float, float]:
    """Energy range (eV) covered by both the library and the data, logged at INFO level."""
    low, high = max(library.energy[0], energy[0]), min(library.energy[-1], energy[-1])
    inside = ((energy >= low) & (energy <= high)).sum()
    if high <= low or inside < 8:
        raise InputDataError(
            f"{library.source}: library energy axis {library.energy[0]:g}-{library.energy[-1]:g} eV "
            f"does not overlap the data's {energy[0]:g}-{energy[-1]:g} eV"
        )
    log.info("library and data overlap on %.2f-%.2f eV (%d channels)", low, high, inside)
    return float(low), float(high)


def pca_denoise(x: np.ndarray, n_components: int, seed: int = 0) -> np.ndarray:
    """High-SNR twin of every spectrum from its first ``n_components`` principal components.

    Parameters
    ----------
    x : ndarray of shape (n_spectra, n_channels)
    n_components : int
        Clipped to ``min(n_spectra, n_channels)``.
    """
    k = min(n_components, *x.shape)
    pca = PCA(n_components=k, svd_solver="randomized" if k < min(x.shape) // 2 else "full", random_state=seed)
    return pca.inverse_transform(pca.fit_transform(x))


def resample(spectra: Spectra, energy: np.ndarray) -> Spectra:
    """Put spectra on another energy axis by linear interpolation (a no-op when the axes agree).

    Raises
    ------
    InputDataError
        If ``energy`` reaches outside the data's range by more than half a channel.
    """
    if spectra.energy.shape == energy.shape and np.allclose(spectra.energy, energy, atol=1e-6, rtol=0):
        return spectra
    half = 0.5 * abs(energy[1] - energy[0])
    if energy[0] < spectra.energy[0] - half or energy[-1] > spectra.energy[-1] + half:
        raise InputDataError(
            f"{spectra.source}: data cover {spectra.energy[0]:g}-{spectra.energy[-1]:g} eV but the model "
            f"needs {energy[0]:g}-{energy[-1]:g} eV"
        )
    index = np.interp(energy, spectra.energy, np.arange(spectra.n_channels))
    low = np.clip(np.floor(index).astype(int), 0, spectra.n_channels - 1)
    high = np.minimum(low + 1, spectra.n_channels - 1)
    frac = index - low
    data = (1 - frac) * spectra.data[..., low] + frac * spectra.data[..., high]
    return Spectra(data, np.asarray(energy, float), spectra.source)
