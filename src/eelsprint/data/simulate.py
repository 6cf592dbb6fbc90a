"""Synthetic in-situ spectrum-image series with ground truth.

Built on eelsprint's own parametric F K-edge shapes (not on any shipped data).
The compositions mimic the MXene surface chemistries of Hollenbach et al.
(2024): fluorine contents of 50, 25, 12.5 and 0 %, whose near-edge structures
differ a little in shape and mostly in intensity. A series heats the film:
fluorine leaves as the temperature rises, so the composition maps change frame
by frame. Each pixel carries the nuisance a real acquisition has: Poisson
counting noise at low dose, an imperfectly subtracted power-law background
(amplitude and exponent errors leave a tilted residual), a noisy per-pixel
normalisation, a small energy misalignment, mixing at domain boundaries, and a
few pixels whose spectrum belongs to no library class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter

from eelsprint.data.spectra import Library, Spectra

__all__ = [
    "COMPOSITIONS",
    "ENERGY",
    "SimulatedSeries",
    "edge_shape",
    "fingerprint_library",
    "outlier_shape",
    "simulate_series",
]

#: Energy axis of the paper's F K-edge window: 677.0 .. 736.75 eV at 0.25 eV.
ENERGY = np.arange(240) * 0.25 + 677.0

#: Composition name -> (relative F K-edge intensity, main-peak energy eV, pre-peak height).
COMPOSITIONS: dict[str, tuple[float, float, float]] = {
    "F50": (1.0, 698.0, 0.30),
    "F25": (0.5, 698.25, 0.38),
    "F12.5": (0.25, 698.5, 0.45),
    "F0": (0.0, 698.5, 0.45),
}


def edge_shape(energy: np.ndarray, intensity: float, peak: float, prepeak: float) -> np.ndarray:
    """Parametric F K edge: onset step, pre-peak, main peak and a broad post-edge hump.

    Parameters
    ----------
    energy : ndarray of shape (n_channels,) or broadcastable
        Energy loss in eV.
    intensity : float
        Overall scale (proportional to the fluorine content).
    peak : float
        Main-peak energy in eV.
    prepeak : float
        Height of the pre-peak relative to the main peak.

    Returns
    -------
    ndarray
        The edge, same shape as ``energy``.
    """
    step = (0.5 + np.arctan((energy - 691.0) / 1.0) / np.pi) * 0.3 * np.exp(-(energy - 691.0) / 80.0)
    pre = prepeak * np.exp(-0.5 * ((energy - 694.0) / 1.1) ** 2)
    main = np.exp(-0.5 * ((energy - peak) / 1.6) ** 2)
    hump = 0.35 * np.exp(-0.5 * ((energy - 713.0) / 5.0) ** 2)
    return intensity * (step + pre + main + hump)


def outlier_shape(energy: np.ndarray) -> np.ndarray:
    """A spectrum in no library class: an oxide-like edge with its peak at 705 eV."""
    step = (0.5 + np.arctan((energy - 700.0) / 1.5) / np.pi) * 0.25
    return 0.6 * (np.exp(-0.5 * ((energy - 705.0) / 2.2) ** 2) + step)


def fingerprint_library(
    energy: np.ndarray = ENERGY, variants: tuple[float, ...] = (0.9, 1.0, 1.1)
) -> Library:
    """Clean theory library: each composition at a few intensity variants (like the DFT set)."""
    spectra, labels = [], []
    for name, (intensity, peak, prepeak) in COMPOSITIONS.items():
        for scale in variants:
            spectra.append(edge_shape(energy, intensity * scale, peak, prepeak))
            labels.append(name)
    return Library(
        np.array(spectra), np.asarray(energy, float), np.array(labels), source="<simulated library>"
    )


@dataclass(frozen=True)
class SimulatedSeries:
    """A simulated in-situ series and its ground truth.

    Attributes
    ----------
    spectra : Spectra
        Observed spectra of shape (n_frames, ny, nx, n_channels), background-subtracted.
    clean : ndarray of shape (n_frames, ny, nx, n_channels)
        The same pixels without counting noise, background residual or misalignment.
    labels : ndarray of int, shape (n_frames, ny, nx)
        Dominant composition (index into ``classes``), -1 for pixels in no library class.
    mixed : ndarray of bool, shape (n_frames, ny, nx)
        Pixels at a domain boundary whose spectrum mixes two compositions.
    temperatures : ndarray of shape (n_frames,)
        Frame temperatures in degrees Celsius.
    library : Library
        The clean fingerprint library.
    classes : ndarray of str
        Class names, in label order.
    """

    spectra: Spectra
    clean: np.ndarray
    labels: np.ndarray
    mixed: np.ndarray
    temperatures: np.ndarray
    library: Library
    classes: np.ndarray


def _composition_maps(rng: np.random.Generator, n_frames: int, shape: tuple[int, int]) -> np.ndarray:
    """Domain maps whose fluorine content falls as the temperature rises."""
    field = gaussian_filter(rng.normal(size=shape), sigma=2.5, mode="wrap")
    field = (field - field.mean()) / field.std()
    maps = []
    for t in np.linspace(0.0, 1.0, n_frames):
        drift = gaussian_filter(rng.normal(size=shape), sigma=3.0, mode="wrap") * 2.0
        level = field + drift + 4.0 * t - 1.5
        maps.append(np.digitize(level, [-0.8, 0.2, 1.2]))
    return np.array(maps)


def _boundary_partner(labels: np.ndarray) -> np.ndarray:
    """For each pixel, a different label among its 4-neighbours, or -1 if none."""
    partner = np.full(labels.shape, -1)
    for axis in (-2, -1):
        for step in (1, -1):
            neighbour = np.roll(labels, step, axis=axis)
            differs = (neighbour != labels) & (partner < 0)
            partner[differs] = neighbour[differs]
    return partner


def simulate_series(
    n_frames: int = 6,
    shape: tuple[int, int] = (19, 30),
    *,
    dose: float = 60.0,
    background_ratio: float = 1.5,
    norm_sd: float = 0.06,
    shift_sd: float = 0.2,
    outlier_fraction: float = 0.03,
    seed: int = 0,
) -> SimulatedSeries:
    """Simulate a heating series of single-pixel spectrum images.

    Parameters
    ----------
    n_frames : int
        Frames (temperatures), from 300 to 800 C.
    shape : (int, int)
        Scan grid (ny, nx) of each frame; the paper's is (19, 30).
    dose : float
        Expected counts at the main peak of the richest composition. Lower is noisier.
    background_ratio : float
        Background height at the window's start relative to that peak.
    norm_sd : float
        Standard deviation of the multiplicative per-pixel normalisation error.
    shift_sd : float
        Standard deviation (eV) of the per-pixel energy misalignment.
    outlier_fraction : float
        Approximate share of pixels in no library class (placed as blobs).
    seed : int
        Random seed; the same seed gives the same series.

    Returns
    -------
    SimulatedSeries

    Examples
    --------
    >>> series = simulate_series(n_frames=2, shape=(8, 10), seed=1)
    >>> series.spectra.data.shape
    (2, 8, 10, 240)
    """
    rng = np.random.default_rng(seed)
    library = fingerprint_library()
    classes = np.array(list(COMPOSITIONS))
    params = np.array(list(COMPOSITIONS.values()))
    labels = _composition_maps(rng, n_frames, shape)
    partner = _boundary_partner(labels)
    mixed = (partner >= 0) & (rng.random(labels.shape) < 0.5)
    weight = np.where(mixed, rng.uniform(0.55, 0.85, labels.shape), 1.0)

    shift = rng.normal(0.0, shift_sd, labels.shape)[..., None]
    drift = np.linspace(-0.1, 0.1, n_frames)[:, None, None, None]

    def edges(index: np.ndarray, offset: np.ndarray | float) -> np.ndarray:
        intensity, peak, prepeak = (params[index][..., k, None] for k in range(3))
        return edge_shape(ENERGY - offset, intensity, peak, prepeak)

    clean = weight[..., None] * edges(labels, 0.0) + (1 - weight[..., None]) * edges(
        np.maximum(partner, 0), 0.0
    )
    observed = weight[..., None] * edges(labels, shift + drift)
    observed = observed + (1 - weight[..., None]) * edges(np.maximum(partner, 0), shift + drift)

    blobs = gaussian_filter(rng.normal(size=labels.shape), sigma=(0, 1.5, 1.5), mode="wrap")
    outlier = blobs > np.quantile(blobs, 1.0 - outlier_fraction)
    clean[outlier] = outlier_shape(ENERGY)
    observed[outlier] = outlier_shape(ENERGY - (shift + drift)[..., 0][outlier][:, None])
    labels = np.where(outlier, -1, labels)
    mixed &= ~outlier

    norm = rng.normal(1.0, norm_sd, labels.shape)[..., None]
    exponent = 3.0
    background = background_ratio * (ENERGY / ENERGY[0]) ** -exponent
    counts = rng.poisson(dose * (observed * norm + background))
    amp_err = rng.normal(1.0, 0.02, labels.shape)[..., None]
    exp_err = rng.normal(0.0, 0.06, labels.shape)[..., None]
    fitted = amp_err * background_ratio * (ENERGY / ENERGY[0]) ** -(exponent + exp_err)
    data = counts / dose - fitted

    temperatures = np.linspace(300.0, 800.0, n_frames)
    spectra = Spectra(data, ENERGY.copy(), source=f"<simulated series seed={seed}>")
    return SimulatedSeries(spectra, clean, labels, mixed, temperatures, library, classes)
