"""Pixel tables: navigation coordinates in CSV files, to and from flat pixel indices.

A table has one integer column per navigation dimension, named as in the result
(``frame, y, x``; ``y, x``; ``pixel``), holding the pixel's index along that
dimension: what a microscope script reads and what ``suggest``, ``update`` and
the loop record exchange. Other columns (``score``, ``label``, ``class``, ...)
ride along.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from eelsprint.data.atomic import atomic_write
from eelsprint.exceptions import InputDataError

__all__ = ["coordinate_table", "flat_indices", "read_table", "write_table"]


def coordinate_table(flat: np.ndarray, dims: Sequence[str], shape: tuple[int, ...]) -> pd.DataFrame:
    """One row per flat pixel index: its index along each navigation dimension."""
    coords = np.unravel_index(np.asarray(flat, dtype=np.int64), shape)
    return pd.DataFrame({dim: c.astype(np.int64) for dim, c in zip(dims, coords, strict=True)})


def flat_indices(table: pd.DataFrame, dims: Sequence[str], shape: tuple[int, ...], source: str) -> np.ndarray:
    """Flat pixel indices of the rows of ``table`` on a scan of ``shape`` (dims ``dims``).

    Raises
    ------
    InputDataError
        A navigation column missing or not integer, or a pixel outside the scan.
    """
    missing = [dim for dim in dims if dim not in table.columns]
    if missing:
        raise InputDataError(
            f"{source}: no column {', '.join(map(repr, missing))}; the result's navigation "
            f"dimensions are {', '.join(dims)}"
        )
    coords = []
    for dim, size in zip(dims, shape, strict=True):
        values = pd.to_numeric(table[dim], errors="coerce").to_numpy(dtype=float)
        bad = ~np.isfinite(values) | (values != np.round(values))
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            value = table[dim].iloc[row]
            raise InputDataError(f"{source}: row {row + 1}: {dim} = {value!r} is not a pixel index")
        outside = (values < 0) | (values >= size)
        if outside.any():
            row = int(np.flatnonzero(outside)[0])
            raise InputDataError(
                f"{source}: row {row + 1}: {dim} = {int(values[row])} is outside the scan "
                f"({dim} runs 0..{size - 1})"
            )
        coords.append(values.astype(np.int64))
    return np.ravel_multi_index(tuple(coords), shape) if coords else np.zeros(0, np.int64)


def read_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """A CSV table; a one-line :class:`InputDataError` when it cannot be read or is empty."""
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise InputDataError(f"{path}: no such file") from None
    except (OSError, ValueError, pd.errors.ParserError) as err:
        raise InputDataError(f"{path}: not a readable CSV table ({str(err).splitlines()[0]})") from None
    if table.empty:
        raise InputDataError(f"{path}: the table has no rows")
    return table


def write_table(table: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write ``table`` as CSV atomically (no index column); returns the path."""
    path = Path(path)
    with atomic_write(path) as tmp:
        table.to_csv(tmp, index=False, float_format="%.6g")
    return path
