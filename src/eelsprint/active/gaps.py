"""Library gaps: groups of pixels that no library class explains, and their prototype spectra.

One low-dose pixel rarely tells a missing class from noise (the per-pixel misfit separated a held-out
class with an AUROC of 0.46-0.76 on the gap study's seed-0 series); a group of pixels does. So:

1. **Segments.** The preprocessed spectra (norms capped at :data:`OUTLIER` times the median) are
   averaged over a :data:`SPATIAL_WINDOW`-pixel window on the last two navigation axes, projected
   on their principal components and over-segmented by :class:`sklearn.cluster.KMeans`.
2. **Misfit.** Each segment's mean is fitted by the best *convex* mixture of the library's class
   means (:func:`mixture_misfit`): weights >= 0 summing to ``1 +- SCALE_TOLERANCE``, with the data's
   noise model (:func:`eelsprint.inference.ood.noise_model`) over the segment's size. The scale is
   bounded because the data's normalisation fixes it: ``ood_score`` fits each fingerprint with a
   free scale, so an intensity-coded library (MXene: 50 % F ~ 2 x 25 % F) explains a 50 %-F pixel
   by the 25 %-F fingerprint; a bounded mixture cannot. The log reduced chi-square is standardised
   over the segments by the median and the spread of the lower half (the explained ones).
3. **Gaps.** Segments above ``threshold`` within :data:`MERGE_DISTANCE` (relative L2) are joined
   (average linkage, :class:`sklearn.cluster.AgglomerativeClustering`). A prototype is the mean
   of a gap's preprocessed spectra (outliers out), in ``clf.library_``'s space; gaps under
   ``min_pixels`` are dropped, the rest ranked by the share of the scan they cover.

A class between two others (MXene 25 % F between 50 and 12.5 %) is their mixture: none is found.
"""

from __future__ import annotations

import io
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr
from scipy.ndimage import uniform_filter
from scipy.optimize import nnls
from sklearn.cluster import AgglomerativeClustering, KMeans
from sklearn.decomposition import PCA

from eelsprint.classify import FingerprintClassifier
from eelsprint.data.atomic import write_bytes, write_json
from eelsprint.data.preprocess import pca_denoise
from eelsprint.data.spectra import Library
from eelsprint.exceptions import ConfigError, InputDataError
from eelsprint.inference.ood import noise_model

__all__ = ["GapReport", "find_gaps", "mixture_misfit", "relative_distance", "write_gaps"]

#: The convex mixture's total weight may lie in ``[1 - t, 1 + t]`` (normalisation error).
SCALE_TOLERANCE = 0.15
#: Side (pixels) of the spatial averaging window used to form segments (1: none).
SPATIAL_WINDOW = 3
#: Most segments of the over-segmentation (fewer when ``n_pixels / min_pixels`` is smaller).
MAX_SEGMENTS = 40
#: Unexplained segments whose mean spectra lie closer than this (relative L2) form one gap.
MERGE_DISTANCE = 0.5
#: Pixels whose norm exceeds this many times the median are outliers (shrunk, left out of means).
OUTLIER = 3.0

_MAD, _MIN_SPREAD = 1.4826, 0.05  # MAD -> sd; least spread of the log misfit (few segments: ~0)


@dataclass(frozen=True)
class GapReport:
    """Groups of pixels no library class explains, ranked, with their prototype spectra.

    Attributes
    ----------
    energy : ndarray of shape (n_channels,)
        The model's energy axis (``clf.energy_``).
    prototypes : ndarray of shape (n_gaps, n_channels)
        Mean preprocessed spectrum of each gap, best first (the space of ``clf.library_.spectra``).
    pixels : list of ndarray of int
        Flat pixel indices (into ``nav_shape``) of each gap.
    nav_shape : tuple of int
        Navigation shape of the data.
    scores : ndarray of shape (n_gaps,)
        Ranking score: the share of the scan's pixels the gap covers.
    nearest_class : list of str
        The library class whose mean fingerprint is nearest (relative L2) to each prototype.
    distances : ndarray of shape (n_gaps, n_classes)
        :func:`relative_distance` of each prototype to each class mean fingerprint (``classes`` order).
    classes : list of str
        Library classes, the columns of ``distances``.
    misfit : ndarray of shape (n_gaps,)
        :func:`mixture_misfit` of each prototype, in its own noise (noise model / gap size).
    ood_score : ndarray of shape (n_gaps,)
        Median ``ood_score`` of the classification result over each gap's pixels.
    model_label : list of str
        The label the model gives most of each gap's pixels.
    """

    energy: np.ndarray
    prototypes: np.ndarray
    pixels: list[np.ndarray]
    nav_shape: tuple[int, ...]
    scores: np.ndarray
    nearest_class: list[str]
    distances: np.ndarray
    classes: list[str]
    misfit: np.ndarray
    ood_score: np.ndarray
    model_label: list[str]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: per gap its pixel count, score, misfit, labels and distances."""
        gaps = [
            {
                "name": f"gap{i + 1}",
                "n_pixels": len(self.pixels[i]),
                "score": float(self.scores[i]),
                "misfit": float(self.misfit[i]),
                "median_ood_score": float(self.ood_score[i]) if np.isfinite(self.ood_score[i]) else None,
                "model_label": self.model_label[i],
                "nearest_class": self.nearest_class[i],
                "distances": dict(zip(self.classes, map(float, self.distances[i]), strict=True)),
            }
            for i in range(len(self.prototypes))
        ]
        return {
            "nav_shape": list(self.nav_shape),
            "n_pixels": math.prod(self.nav_shape),
            "energy_range_ev": [float(self.energy[0]), float(self.energy[-1])],
            "score": "share of the scan's pixels in the gap",
            "distance": "relative L2: |prototype - class mean| / |prototype|",
            "gaps": gaps,
        }


def relative_distance(prototypes: np.ndarray, means: np.ndarray) -> np.ndarray:
    """``|p - m| / |p|`` for every prototype ``p`` (n, C) and class mean ``m`` (k, C): shape (n, k)."""
    diff = np.linalg.norm(prototypes[:, None, :] - means[None, :, :], axis=-1)
    return diff / np.maximum(np.linalg.norm(prototypes, axis=-1, keepdims=True), 1e-30)


def mixture_misfit(
    spectrum: np.ndarray,
    var: np.ndarray,
    means: np.ndarray,
    energy: np.ndarray,
) -> tuple[float, np.ndarray]:
    """Reduced chi-square of ``spectrum`` (C,) against its best bounded convex mixture of ``means`` (k, C).

    Weights >= 0 summing to a scale in ``1 +- SCALE_TOLERANCE`` (seven values, each enforced by a
    heavily weighted row), plus a free offset, tilt, curvature, energy shift and broadening (the
    first and second derivative of the mean fingerprint), each as two opposite non-negative
    columns, by :func:`scipy.optimize.nnls`; ``var`` (C,) is the noise variance of ``spectrum``.
    Returns the statistic and the class weights (k,).
    """
    n_channels, k = spectrum.shape[-1], len(means)
    ramp = np.linspace(-1.0, 1.0, n_channels)
    slope = np.gradient(means.mean(0), energy)
    nuisance = np.stack([np.ones(n_channels), ramp, ramp**2, slope, np.gradient(slope, energy)], 1)
    design = np.concatenate([means.T, nuisance, -nuisance], 1) / np.sqrt(var)[:, None]
    target = spectrum / np.sqrt(var)
    heavy = 1e3 * max(float(np.linalg.norm(design)), 1.0)
    row = heavy * np.r_[np.ones(k), np.zeros(design.shape[1] - k)]
    best, weights = np.inf, np.zeros(k)
    for scale in np.linspace(1.0 - SCALE_TOLERANCE, 1.0 + SCALE_TOLERANCE, 7):
        coef = nnls(np.vstack([design, row]), np.r_[target, heavy * scale])[0]
        rss = float(((target - design @ coef) ** 2).sum())
        if rss < best:
            best, weights = rss, coef[:k]
    return best / max(n_channels - k - 5, 1), weights


def _check(clf: FingerprintClassifier, result: xr.Dataset, nav: tuple[int, ...], source: str) -> None:
    """A ``result`` of this model (classes, encoder) on this data (navigation shape)."""
    if "proba" not in result or "ood_score" not in result:
        raise InputDataError(f"{source}: the classification result has no 'proba' or 'ood_score'")
    shape, made_by = tuple(result["proba"].shape[:-1]), result.attrs.get("encoder_id")
    if shape != nav:
        raise InputDataError(
            f"{source}: the result's navigation shape {shape} does not match the data's {nav}"
        )
    classes = [str(c) for c in result.coords["class"].values] if "class" in result.coords else []
    ours = getattr(clf, "encoder_id_", made_by)
    if classes != [str(c) for c in clf.classes_] or made_by not in (None, ours):
        raise InputDataError(f"{source}: the classification result was made by another model; classify again")


def _smooth(x: np.ndarray, nav: tuple[int, ...]) -> np.ndarray:
    """``x`` (N, C) averaged over a ``SPATIAL_WINDOW`` window on the last two navigation axes."""
    if SPATIAL_WINDOW <= 1 or not nav:
        return x
    size = [1] * max(len(nav) - 2, 0) + [SPATIAL_WINDOW] * min(len(nav), 2) + [1]
    return uniform_filter(x.reshape(*nav, -1), size=size, mode="nearest").reshape(x.shape)


def _segments(x: np.ndarray, nav: tuple[int, ...], n_segments: int, seed: int) -> np.ndarray:
    """Segment index of every pixel: KMeans on the principal components of the smoothed spectra."""
    smoothed = _smooth(x, nav)
    n_components = min(8, *smoothed.shape)
    scores = PCA(n_components, random_state=seed).fit_transform(smoothed)
    return KMeans(n_segments, n_init=4, random_state=seed).fit_predict(scores)


def _robust_z(values: np.ndarray) -> np.ndarray:
    """Standard scores from the median and the spread (at least ``_MIN_SPREAD``) of the lower half."""
    centre = float(np.median(values))
    spread = _MAD * float(np.median(np.abs(values[values <= centre] - centre)))
    return (values - centre) / max(spread, _MIN_SPREAD)


def find_gaps(
    clf: FingerprintClassifier,
    X: Any,
    energy: np.ndarray | None = None,
    result: xr.Dataset | None = None,
    *,
    max_gaps: int = 5,
    min_pixels: int = 20,
    threshold: float = 2.0,
) -> GapReport:
    """Find groups of pixels that no convex mixture of library classes explains (module docstring).

    Parameters
    ----------
    clf : FingerprintClassifier
        A fitted model; its library (``clf.library_``) is what must explain the pixels.
    X : Spectra, HyperSpy Signal1D or array-like of shape (..., n_channels)
        The data, as :meth:`FingerprintClassifier.classify` takes them.
    energy : ndarray of shape (n_channels,), optional
        Energy axis (eV) of a plain array that is not on the model's axis.
    result : xarray.Dataset, optional
        ``clf.classify(X, energy)`` if already computed (it supplies each gap's model label and
        median ``ood_score``); computed when omitted.
    max_gaps : int
        Most gaps reported.
    min_pixels : int
        Fewest pixels in a gap; also sets the segment count (``n_pixels // min_pixels``, at most
        :data:`MAX_SEGMENTS`).
    threshold : float
        Robust standard score of a segment's log misfit above which it is unexplained.

    Returns
    -------
    GapReport
        Possibly with no gaps.

    Raises
    ------
    InputDataError
        ``result`` does not belong to ``X`` (navigation shape) or to ``clf`` (classes, encoder), or
        there are fewer than ``2 * min_pixels`` pixels.
    ConfigError
        ``max_gaps < 1``, ``min_pixels < 2`` or ``threshold <= 0``.
    """
    if max_gaps < 1 or min_pixels < 2 or not threshold > 0:
        raise ConfigError(
            f"need max_gaps >= 1, min_pixels >= 2, threshold > 0; got {max_gaps}, {min_pixels}, {threshold}"
        )
    spectra = clf.prepare(X, energy)
    nav, x = spectra.nav_shape, spectra.flat()
    if result is not None:
        _check(clf, result, nav, spectra.source)
    if len(x) < 2 * min_pixels:
        raise InputDataError(
            f"{spectra.source}: {len(x)} pixels; finding gaps needs {2 * min_pixels} or more"
        )
    if result is None:
        result = clf.classify(X, energy)
    seed = clf.config_.train.seed
    means = clf.library_.class_means()  # in clf.classes_ order: the classes are the library's
    norm = np.linalg.norm(x, axis=1)
    limit = OUTLIER * float(np.median(norm))
    inlier = norm <= limit
    shrunk = x * np.minimum(1.0, limit / np.maximum(norm, 1e-30))[:, None]
    alpha, beta = noise_model(shrunk, pca_denoise(shrunk, clf.config_.preprocess.pca_components, seed=seed))

    def prototype(rows: np.ndarray) -> tuple[np.ndarray, float]:
        keep = rows[inlier[rows]] if inlier[rows].any() else rows
        mean = x[keep].mean(0)
        return mean, mixture_misfit(mean, (alpha + beta * np.abs(mean)) / len(keep), means, clf.energy_)[0]

    segment = _segments(shrunk, nav, int(np.clip(len(x) // min_pixels, 2, MAX_SEGMENTS)), seed)
    groups = [np.flatnonzero(segment == s) for s in np.unique(segment)]
    fits = [prototype(rows) for rows in groups]
    z = _robust_z(np.log(np.maximum([f[1] for f in fits], 1e-300)))
    flagged = [i for i in np.argsort(-z) if z[i] > threshold]
    gaps = _merge([groups[i] for i in flagged], np.array([fits[i][0] for i in flagged]))
    gaps = sorted((g for g in gaps if len(g) >= min_pixels), key=len, reverse=True)[:max_gaps]
    fitted = [prototype(rows) for rows in gaps]
    protos = np.array([f[0] for f in fitted]).reshape(len(gaps), len(clf.energy_))
    dist, classes = relative_distance(protos, means), [str(c) for c in clf.classes_]
    ood, labels = (
        result["ood_score"].values.reshape(-1),
        result["proba"].values.reshape(len(x), -1).argmax(-1),
    )
    return GapReport(
        np.asarray(clf.energy_, float), protos, [np.sort(rows) for rows in gaps], nav,
        np.array([len(rows) / len(x) for rows in gaps]), [classes[i] for i in dist.argmin(1)], dist, classes,
        np.array([f[1] for f in fitted]), np.array([float(np.median(ood[rows])) for rows in gaps]),
        [classes[np.bincount(labels[rows]).argmax()] for rows in gaps],
    )  # fmt: skip


def _merge(groups: list[np.ndarray], protos: np.ndarray) -> list[np.ndarray]:
    """Pixel sets of unexplained segments whose mean spectra lie within ``MERGE_DISTANCE``, joined."""
    if len(groups) < 2:
        return groups
    norms = np.linalg.norm(protos, axis=1)
    scale = np.maximum(np.maximum(norms[:, None], norms[None, :]), 1e-30)
    dist = np.linalg.norm(protos[:, None] - protos[None, :], axis=-1) / scale
    link = AgglomerativeClustering(
        None, metric="precomputed", linkage="average", distance_threshold=MERGE_DISTANCE
    )
    merged = link.fit_predict(dist)
    return [np.concatenate([g for g, m in zip(groups, merged, strict=True) if m == k]) for k in set(merged)]


def _class_means(library: Library, energy: np.ndarray) -> tuple[list[str], np.ndarray]:
    """Class names and mean fingerprints of ``library`` on ``energy`` (it must cover the axis)."""
    half = 0.5 * abs(float(energy[1] - energy[0])) if len(energy) > 1 else 0.0
    if library.energy[0] > energy[0] + half or library.energy[-1] < energy[-1] - half:
        raise InputDataError(
            f"{library.source}: library covers {library.energy[0]:g}-{library.energy[-1]:g} eV but the gaps "
            f"need {energy[0]:g}-{energy[-1]:g} eV; pass the model's library (clf.library_)"
        )
    classes = [str(c) for c in library.classes]
    means = library.class_means()
    return classes, np.stack([np.interp(energy, library.energy, row) for row in means])


def _csv(report: GapReport) -> bytes:
    """``energy_eV,gap1,gap2,...``: the library CSV format of :func:`eelsprint.data.io.read_library`."""
    buffer = io.StringIO()
    names = ",".join(["energy_eV", *(f"gap{i + 1}" for i in range(len(report.prototypes)))])
    table = np.column_stack([report.energy, report.prototypes.T])
    np.savetxt(buffer, table, fmt="%.10g", delimiter=",", header=names, comments="")
    return buffer.getvalue().encode("utf-8")


def _png(report: GapReport, classes: list[str], means: np.ndarray) -> bytes:
    """Prototypes against their nearest library class (top) and the gap map per frame (bottom)."""
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    n_gaps, nav = len(report.prototypes), report.nav_shape
    grid = np.zeros(math.prod(nav))  # 0: explained, i: gap i
    for i, rows in enumerate(report.pixels):
        grid[rows] = i + 1
    frames = (grid.reshape(-1, *nav[-2:]) if len(nav) >= 2 else grid.reshape(1, 1, -1))[:6]
    cols = max(n_gaps, len(frames))
    fig = Figure(figsize=(3.2 * cols, 6.0), layout="constrained")
    fig.suptitle(f"{n_gaps} library gap(s) in {math.prod(nav)} pixels")
    axes = fig.subplots(2, cols, squeeze=False)
    dist = relative_distance(report.prototypes, means)
    for i, ax in enumerate(axes[0]):
        if i >= n_gaps:
            ax.axis("off")
            continue
        k = int(dist[i].argmin())
        ax.plot(report.energy, report.prototypes[i], color=f"C{i}", label=f"gap{i + 1}")
        ax.plot(report.energy, means[k], "k--", lw=0.8, label=f"{classes[k]} (d={dist[i, k]:.2f})")
        ax.set(title=f"gap{i + 1}: {len(report.pixels[i])} px", xlabel="energy loss (eV)")
        ax.legend(fontsize=7)
    cmap = ListedColormap(["#d9d9d9", *(f"C{i}" for i in range(n_gaps))])
    for f, ax in enumerate(axes[1]):
        ax.axis("off")
        if f < len(frames):
            ax.imshow(frames[f], cmap=cmap, vmin=-0.5, vmax=n_gaps + 0.5, interpolation="nearest")
            ax.set_title(f"frame {f}" if len(nav) > 2 else "gap pixels")
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return buffer.getvalue()


def write_gaps(report: GapReport, out_dir: str | os.PathLike[str], library: Library) -> list[Path]:
    """Write ``prototypes.csv``, ``gaps.json`` and ``gaps.png`` into ``out_dir``, each atomically.

    Parameters
    ----------
    report : GapReport
        From :func:`find_gaps`.
    out_dir : str or path-like
        Created if needed.
    library : Library
        The library in the prototypes' space (``clf.library_``) that the figure compares them with.

    Returns
    -------
    list of Path
        The three files, in that order. ``prototypes.csv`` has the column ``energy_eV`` and one
        column per gap (``gap1``, ...), readable by :func:`eelsprint.data.io.read_library`.

    Raises
    ------
    InputDataError
        The library does not cover the report's energy axis (nothing is written).
    OutputError
        A file cannot be written.
    """
    classes, means = _class_means(library, report.energy)
    csv, png, summary = _csv(report), _png(report, classes, means), report.to_dict()
    paths = [Path(out_dir) / name for name in ("prototypes.csv", "gaps.json", "gaps.png")]
    write_bytes(paths[0], csv)
    write_json(paths[1], summary | {"files": [p.name for p in paths]}, allow_nan=False)
    write_bytes(paths[2], png)
    return paths
