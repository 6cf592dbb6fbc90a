"""Known-truth test series built from *any* fingerprint library, with every acquisition nuisance.

Independent of :mod:`eelsprint.data.simulate` (which draws its own parametric
edges and is too easy to tell a good model from a plain nearest-fingerprint
match): here the spectra are the library's own, put through what a real
acquisition does to them, so a model is judged on data it was not designed on.

A series is an annealing front moving across the scan: the library classes, in
library order, form bands behind a rough front that advances frame by frame.
Every pixel carries

* a random member of its class (libraries may hold several spectra per class);
* mixing at band boundaries (the truth is the dominant class, weights stored);
* instrumental broadening (a per-pixel Gaussian) and energy misalignment
  (per-pixel jitter plus a drift over the frames);
* a normalisation error (per-pixel thickness/current scatter and a per-frame
  beam-current drift), stored as the pixel's true dose;
* an imperfect power-law background: the sum of two power laws with per-pixel
  exponents, so a single power law fitted on the pre-edge window leaves a
  residual under the edge. The energy axis is extended below the library's by a
  pre-edge region (signal zero there) so that a background window exists;
* Poisson counting at ``dose`` counts per channel at the edge (the maximum of the
  mean library spectrum), background included;
* a few per cent of out-of-library pixels, in spatial blobs, of the kinds in
  :data:`KINDS`: ``"foreign_edge"`` (another element's edge, step plus white
  line, somewhere in the window), ``"extra_feature"`` (a library spectrum with an
  extra peak) and ``"background"`` (no edge: background and noise only).

The library is taken as background-free (theory, or measured references after
background subtraction). A library with an all-zero class (e.g. the MXene
0 % F composition) makes ``"background"`` pixels indistinguishable from that
class: leave that kind out through :attr:`RealismConfig.ood_kinds`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import gaussian_filter, gaussian_filter1d

from eelsprint.data.preprocess import shift_spectra
from eelsprint.data.spectra import Library, Spectra
from eelsprint.exceptions import ConfigError

__all__ = ["KINDS", "RealismConfig", "RealisticSeries", "realistic_series"]

#: Kinds of out-of-library pixel; ``RealisticSeries.ood_kind`` indexes this tuple.
KINDS = ("foreign_edge", "extra_feature", "background")


@dataclass(frozen=True)
class RealismConfig:
    """Settings of :func:`realistic_series`; every default is a plausible low-dose acquisition.

    Attributes
    ----------
    n_frames : int
        Frames of the series (the front advances across them).
    shape : (int, int)
        Scan grid (ny, nx) of each frame.
    dose : float
        Expected counts per channel at the edge maximum (3 to 100 is the realistic range).
    background_ratio : float
        Background height at the library's first channel relative to the edge maximum.
    exponent : (float, float)
        Range of the per-pixel power-law exponent of the background.
    second_power_law : float
        Largest weight of the second background power law (exponent 2 higher),
        the part a single power-law fit cannot follow.
    pre_edge_ev : float or None
        Width (eV) of the region added below the library's axis; default half the
        library's range.
    norm_sd : float
        Standard deviation of the per-pixel multiplicative normalisation error.
    beam_drift_sd : float
        Standard deviation of the per-frame beam-current factor.
    shift_sd_ev : float
        Standard deviation (eV) of the per-pixel energy misalignment.
    drift_ev : float
        Total energy drift (eV) from the first to the last frame.
    broadening_ev : float
        Largest extra Gaussian broadening sigma (eV); drawn per pixel from [0, this].
    mix_width : float
        Width of the mixing zone at a band boundary, as a fraction of a band.
    front_roughness : float
        Standard deviation of the front's roughness, as a fraction of the field width.
    ood_fraction : float
        Share of out-of-library pixels, split evenly over ``ood_kinds``.
    ood_kinds : tuple of str
        Kinds of out-of-library pixel (a subset of :data:`KINDS`).
    feature_height : float
        Height of the foreign edge and of the extra feature relative to the edge maximum.
    seed : int
        The same seed gives the same series.
    """

    n_frames: int = 6
    shape: tuple[int, int] = (24, 32)
    dose: float = 30.0
    background_ratio: float = 2.0
    exponent: tuple[float, float] = (2.5, 3.5)
    second_power_law: float = 0.3
    pre_edge_ev: float | None = None
    norm_sd: float = 0.08
    beam_drift_sd: float = 0.05
    shift_sd_ev: float = 0.25
    drift_ev: float = 0.4
    broadening_ev: float = 0.6
    mix_width: float = 0.25
    front_roughness: float = 0.06
    ood_fraction: float = 0.04
    ood_kinds: tuple[str, ...] = KINDS
    feature_height: float = 0.4
    seed: int = 0

    def __post_init__(self) -> None:
        if self.n_frames < 1 or min(self.shape) < 2 or len(self.shape) != 2:
            raise ConfigError(f"need n_frames >= 1 and a (ny, nx) shape of at least 2, got {self.shape}")
        if self.dose <= 0 or self.background_ratio < 0:
            raise ConfigError(f"dose must be > 0 and background_ratio >= 0, got {self.dose}")
        if not 0 <= self.ood_fraction < 0.5:
            raise ConfigError(f"ood_fraction must be in [0, 0.5), got {self.ood_fraction}")
        if not 0 < self.mix_width <= 1:
            raise ConfigError(f"mix_width must be in (0, 1], got {self.mix_width}")
        unknown = set(self.ood_kinds) - set(KINDS)
        if unknown or not self.ood_kinds:
            raise ConfigError(f"ood_kinds must be a non-empty subset of {KINDS}, got {self.ood_kinds}")


@dataclass(frozen=True)
class RealisticSeries:
    """A generated series and its truth.

    Attributes
    ----------
    counts : Spectra
        Raw counts with background, shape (n_frames, ny, nx, n_channels), on
        :attr:`energy` (the library's axis extended below by the pre-edge region).
    gain : float
        Nominal counts per library unit (``dose / edge maximum``): ``counts / gain``
        is the series in library units, what a calibrated acquisition delivers.
    background_window : (float, float)
        The pre-edge region (eV): the added region and the library's own channels
        before its edge (where the mean library spectrum stays below 3 % of its maximum).
    labels : ndarray of int, shape (n_frames, ny, nx)
        Dominant class (index into ``library.classes``); -1 for out-of-library pixels.
    ood_kind : ndarray of int, shape (n_frames, ny, nx)
        Index into :data:`KINDS` for out-of-library pixels, -1 elsewhere.
    weights : ndarray of shape (n_frames, ny, nx, n_classes)
        Mixture weight of each class (rows sum to 1 in library pixels; the
        underlying class for ``"extra_feature"``; zero for the other kinds).
    mixed : ndarray of bool, shape (n_frames, ny, nx)
        Library pixels whose spectrum mixes two classes.
    dose : ndarray of shape (n_frames, ny, nx)
        True expected counts at the edge maximum of each pixel (normalisation error included).
    library : Library
        The library the series was made from.
    """

    counts: Spectra
    gain: float
    background_window: tuple[float, float]
    labels: np.ndarray
    ood_kind: np.ndarray
    weights: np.ndarray
    mixed: np.ndarray
    dose: np.ndarray
    library: Library

    @property
    def spectra(self) -> Spectra:
        """The series in library units (``counts / gain``), background still in."""
        return Spectra(self.counts.data / self.gain, self.counts.energy, self.counts.source)


def _front(cfg: RealismConfig, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Continuous class coordinate in [0, n_classes - 1] per pixel, shape (n_frames, ny, nx)."""
    ny, nx = cfg.shape
    rough = gaussian_filter(rng.normal(size=(cfg.n_frames, ny, nx)), sigma=(0, 2.0, 2.0), mode="wrap")
    rough *= cfg.front_roughness / max(float(rough.std()), 1e-12)
    u = np.linspace(0.0, 1.0, nx)[None, None, :] + rough
    front = np.linspace(0.35, 1.25, cfg.n_frames)[:, None, None]
    return np.clip((front - u) * (n_classes - 1) / 0.8, 0.0, n_classes - 1)


def _blobs(shape: tuple[int, ...], fraction: float, free: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Spatial blobs covering ``fraction`` of all pixels, only where ``free``."""
    field = gaussian_filter(rng.normal(size=shape), sigma=(0, 1.2, 1.2), mode="wrap")
    n = round(fraction * field.size)
    if n == 0:
        return np.zeros(shape, bool)
    order = np.argsort(np.where(free, field, -np.inf), axis=None)[::-1][:n]
    out = np.zeros(field.size, bool)
    out[order] = True
    return out.reshape(shape)


def _peak(energy: np.ndarray, centre: np.ndarray, width: float) -> np.ndarray:
    """Unit Gaussian peaks, ``centre`` of shape (n,) -> (n, n_channels)."""
    return np.exp(-0.5 * ((energy[None, :] - centre[:, None]) / width) ** 2)


def _broaden(signal: np.ndarray, sigma_ch: np.ndarray, levels: int = 4) -> np.ndarray:
    """Gaussian broadening per spectrum, sigma (channels) quantised to ``levels`` values."""
    edges = np.linspace(0.0, float(sigma_ch.max()) + 1e-9, levels + 1)
    which = np.clip(np.digitize(sigma_ch, edges) - 1, 0, levels - 1)
    out = signal.copy()
    for level in range(1, levels):
        rows = which == level
        if rows.any():
            width = 0.5 * (edges[level] + edges[level + 1])
            out[rows] = gaussian_filter1d(signal[rows], width, axis=-1, mode="nearest")
    return out


def realistic_series(library: Library, config: RealismConfig | None = None) -> RealisticSeries:
    """Generate a known-truth series from ``library`` with every nuisance of a real acquisition.

    Parameters
    ----------
    library : Library
        Background-free fingerprints on a uniform energy axis.
    config : RealismConfig, optional
        ``RealismConfig()`` when omitted.

    Returns
    -------
    RealisticSeries

    Examples
    --------
    >>> from eelsprint.data.simulate import fingerprint_library
    >>> cfg = RealismConfig(n_frames=2, shape=(8, 10), ood_kinds=("foreign_edge", "extra_feature"))
    >>> series = realistic_series(fingerprint_library(), cfg)
    >>> series.counts.data.shape, series.labels.shape
    ((2, 8, 10, 360), (2, 8, 10))
    """
    cfg = config or RealismConfig()
    rng = np.random.default_rng(cfg.seed)
    energy_lib = library.energy
    step = float(energy_lib[1] - energy_lib[0])
    width = float(energy_lib[-1] - energy_lib[0])
    n_pre = max(3, round((cfg.pre_edge_ev or 0.5 * width) / step))
    energy = np.concatenate([energy_lib[0] - step * np.arange(n_pre, 0, -1), energy_lib])
    lib = np.concatenate([np.zeros((len(library.spectra), n_pre)), library.spectra], axis=1)
    index, n_classes = library.class_index, len(library.classes)
    means = np.abs(np.stack([lib[index == c].mean(0) for c in range(n_classes)]))
    edge_max = float(means.max())
    n_before = int(np.argmax(means.max(0)[n_pre:] > 0.03 * edge_max))  # library channels before the edge
    nav = (cfg.n_frames, *cfg.shape)
    n = int(np.prod(nav))

    # composition: bands behind an advancing front, mixed at the boundaries
    coord = _front(cfg, n_classes, rng).reshape(-1)
    low = np.minimum(np.floor(coord).astype(int), n_classes - 1)
    frac = coord - low
    upper = np.clip((frac - 0.5) / cfg.mix_width + 0.5, 0.0, 1.0)
    high = np.minimum(low + 1, n_classes - 1)
    weights = np.zeros((n, n_classes))
    np.add.at(weights, (np.arange(n), low), 1.0 - upper)
    np.add.at(weights, (np.arange(n), high), upper)
    labels = weights.argmax(-1)
    mixed = (weights.max(-1) < 1.0 - 1e-12) & (low != high)

    sizes = np.bincount(index, minlength=n_classes)
    table = np.zeros((n_classes, sizes.max()), int)
    for c in range(n_classes):
        table[c, : sizes[c]] = np.flatnonzero(index == c)

    def member(cls: np.ndarray) -> np.ndarray:
        """A random library spectrum of each class in ``cls``."""
        return table[cls, rng.integers(0, sizes[cls])]

    signal = (1.0 - upper)[:, None] * lib[member(low)] + upper[:, None] * lib[member(high)]

    # out-of-library pixels, one blob field per kind
    ood_kind = np.full(n, -1)
    free = np.ones(nav, bool)
    for k in cfg.ood_kinds:
        blob = _blobs(nav, cfg.ood_fraction / len(cfg.ood_kinds), free, rng)
        free &= ~blob
        ood_kind[blob.reshape(-1)] = KINDS.index(k)
    inside = energy_lib[0] + width * np.array([0.2, 0.8])
    for k in cfg.ood_kinds:
        rows = np.flatnonzero(ood_kind == KINDS.index(k))
        if not rows.size:
            continue
        height = cfg.feature_height * edge_max * rng.uniform(0.8, 1.2, rows.size)[:, None]
        centre = np.full(rows.size, rng.uniform(*inside)) + rng.normal(0.0, 0.3, rows.size)
        if k == "foreign_edge":
            onset = 0.5 + np.arctan(energy[None, :] - centre[:, None]) / np.pi  # 1 eV wide step
            signal[rows] = height * (0.5 * onset + _peak(energy, centre + 1.5, 1.2))
            weights[rows] = 0.0
        elif k == "extra_feature":
            signal[rows] += height * _peak(energy, centre, 1.0)
        else:
            signal[rows] = 0.0
            weights[rows] = 0.0
    labels[ood_kind >= 0] = -1
    mixed &= ood_kind < 0

    # instrument: broadening, misalignment, dose with normalisation error, background, counting
    signal = _broaden(signal, rng.uniform(0.0, cfg.broadening_ev / step, n))
    frame = np.repeat(np.arange(cfg.n_frames), n // cfg.n_frames)
    drift = np.linspace(-0.5, 0.5, cfg.n_frames)[frame] * cfg.drift_ev
    signal = shift_spectra(signal, energy, rng.normal(0.0, cfg.shift_sd_ev, n) + drift)
    beam = np.clip(rng.normal(1.0, cfg.beam_drift_sd, cfg.n_frames), 0.5, None)[frame]
    dose = cfg.dose * beam * rng.lognormal(0.0, cfg.norm_sd, n)
    ratio = (energy / energy_lib[0])[None, :]
    r = rng.uniform(*cfg.exponent, n)[:, None]
    second = rng.uniform(0.0, cfg.second_power_law, n)[:, None]
    background = cfg.background_ratio * ((1 - second) * ratio**-r + second * ratio ** -(r + 2.0))
    expected = np.clip(dose[:, None] * (signal / edge_max + background), 0.0, None)
    counts = rng.poisson(expected).astype(float)

    source = f"<realistic series of {library.source}, dose {cfg.dose:g}, seed {cfg.seed}>"
    return RealisticSeries(
        counts=Spectra(counts.reshape(*nav, -1), energy, source),
        gain=cfg.dose / edge_max,
        background_window=(float(energy[0]), float(energy[n_pre + n_before - 1])),
        labels=labels.reshape(nav),
        ood_kind=ood_kind.reshape(nav),
        weights=weights.reshape(*nav, n_classes),
        mixed=mixed.reshape(nav),
        dose=dose.reshape(nav),
        library=library,
    )
