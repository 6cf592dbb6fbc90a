"""Which pixels to re-acquire or label next: a ranked, spatially spread batch.

A batch of the ``k`` best-scoring pixels tends to be one clump (uncertainty is
spatially smooth: a boundary, a blob), which wastes re-acquisitions on
neighbours that teach the same thing. :func:`suggest` picks greedily by score
and skips any pixel closer than ``min_distance`` (Euclidean, in pixels) to one
already picked in the same frame; frames are separate scans and do not block
each other. Pixels already re-acquired are left out through ``exclude``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import xarray as xr

from eelsprint.active.acquisition import acquisition_scores
from eelsprint.active.pixels import coordinate_table, flat_indices
from eelsprint.exceptions import InputDataError

__all__ = ["nav_layout", "spread_batch", "suggest"]


def nav_layout(result: xr.Dataset) -> tuple[tuple[str, ...], tuple[int, ...]]:
    """Navigation dimension names and shape of a result (those of its ``label`` variable)."""
    if "label" not in result or "proba" not in result or "class" not in result.dims:
        source = result.attrs.get("source", "<result>")
        raise InputDataError(f"{source}: not an eelsprint classification result (no label/proba/class)")
    label = result["label"]
    return tuple(map(str, label.dims)), tuple(label.shape)


def spread_batch(
    scores: np.ndarray, k: int, min_distance: float = 2.0, exclude: np.ndarray | None = None
) -> np.ndarray:
    """Flat indices of up to ``k`` pixels, best score first, at least ``min_distance`` apart.

    Parameters
    ----------
    scores : ndarray of shape (..., ny, nx), (n_frames, ny, nx) or (n_pixels,)
        Higher is better; ``-inf`` is never picked. A leading ``frame``-like axis of a 3-D
        array separates scans (spacing applies within a frame).
    k : int
    min_distance : float
        Smallest Euclidean distance (pixels) between two picks of one frame; 0 turns it off.
    exclude : ndarray of int, optional
        Flat indices never to pick.

    Returns
    -------
    ndarray of int64, at most ``k`` entries (fewer when spacing leaves no room)
    """
    flat = scores.reshape(-1).astype(float)
    if exclude is not None and len(exclude):
        flat = flat.copy()
        flat[np.asarray(exclude, dtype=np.int64)] = -np.inf
    order = np.argsort(-flat, kind="stable")
    order = order[flat[order] > -np.inf]
    if min_distance <= 0:
        return order[:k].astype(np.int64)
    coords = np.stack(np.unravel_index(order, scores.shape), 1).astype(float)
    group = coords[:, 0] if scores.ndim == 3 else np.zeros(len(order))
    space = coords[:, 1:] if scores.ndim == 3 else coords
    picked: list[int] = []
    for i in range(len(order)):
        if picked:
            same = group[picked] == group[i]
            near = np.hypot.reduce(space[picked][same] - space[i], axis=1) < min_distance
            if near.any():
                continue
        picked.append(i)
        if len(picked) == k:
            break
    return order[picked].astype(np.int64)


def suggest(
    result: xr.Dataset,
    k: int,
    strategy: str = "bald",
    *,
    min_distance: float = 2.0,
    exclude: pd.DataFrame | np.ndarray | None = None,
    seed: int = 0,
) -> pd.DataFrame:
    """The next ``k`` pixels to re-acquire or label, ranked.

    Parameters
    ----------
    result : xarray.Dataset
        A classification result (:meth:`FingerprintClassifier.classify
        <eelsprint.classify.FingerprintClassifier.classify>` or ``eelsprint classify``'s NetCDF).
    k : int
        Batch size.
    strategy : {"bald", "entropy", "margin", "ood", "random"}
        See :mod:`eelsprint.active.acquisition`.
    min_distance : float
        Smallest distance (pixels) between two picks in one frame (:func:`spread_batch`).
    exclude : DataFrame or ndarray of int, optional
        Pixels already re-acquired: a table with the navigation columns (e.g. an earlier
        ``suggest`` CSV) or flat indices.
    seed : int
        Seeds ``"random"``.

    Returns
    -------
    pandas.DataFrame
        One row per pixel, best first: ``rank``, one column per navigation dimension (the
        pixel's index, named as in ``result``), ``score``, ``label`` (class name) and
        ``probability`` (of that label).

    Raises
    ------
    InputDataError
        ``k`` < 1 or larger than the pixels left, an unknown strategy, an exclusion outside the
        scan, or spacing that leaves fewer than ``k`` pixels (lower ``min_distance``).
    """
    dims, shape = nav_layout(result)
    source = str(result.attrs.get("source", "<result>"))
    scores = acquisition_scores(result, strategy, seed)
    if isinstance(exclude, pd.DataFrame):
        exclude = flat_indices(exclude, dims, shape, "exclusion list")
    skip = np.unique(np.asarray(exclude if exclude is not None else [], dtype=np.int64))
    if skip.size and (skip.min() < 0 or skip.max() >= scores.size):
        raise InputDataError(f"exclusion list: pixel index outside the scan of {scores.size} pixels")
    available = scores.size - skip.size
    if not 1 <= k <= available:
        raise InputDataError(
            f"{source}: k = {k} must be between 1 and the {available} pixels available "
            f"({scores.size} in the scan, {skip.size} excluded)"
        )
    picked = spread_batch(scores, k, min_distance, skip)
    if len(picked) < k:
        raise InputDataError(
            f"{source}: only {len(picked)} pixels are {min_distance:g} pixels apart; ask for fewer "
            "or lower min_distance"
        )
    table = coordinate_table(picked, dims, shape)
    label = result["label"].values.reshape(-1)[picked]
    table.insert(0, "rank", np.arange(1, len(picked) + 1))
    table["score"] = scores.reshape(-1)[picked]
    table["label"] = np.asarray(result["class"].values, dtype=str)[label]
    table["probability"] = result["proba"].values.reshape(scores.size, -1)[picked, label]
    return table
