"""The one chunk runner: apply a function to slices of its inputs and join what it returns.

Every batched computation in eelsprint (classification, the psi statistics, the
teacher of the distilled head, posterior draws, the benchmark) runs through
:func:`map_chunks`, which bounds the memory and keeps intermediates in cache.
It follows the caller's autograd mode (wrap it in ``torch.inference_mode()`` or
``torch.no_grad()`` as needed).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

import numpy as np
import torch
from tqdm.auto import tqdm

__all__ = ["map_chunks"]

T = TypeVar("T")
#: Fewest chunks for which a progress bar is worth showing.
BAR_MIN_CHUNKS = 8


def map_chunks(fn: Callable[..., T], *inputs: Any, chunk: int, dim: int = 0, desc: str | None = None) -> T:
    """Call ``fn`` on ``chunk`` rows of every input at a time and join the results.

    Parameters
    ----------
    fn : callable
        Takes one slice of each input (the same rows of each) and returns a tensor or
        ndarray, ``None``, or a tuple or dataclass of these (e.g. a ``Prediction``).
    *inputs : Tensor or ndarray
        All with the same length N along the first axis.
    chunk : int
        Rows per call (>= 1).
    dim : int
        Axis of ``fn``'s outputs along which the chunks are joined.
    desc : str, optional
        Label of a progress bar, shown when there are at least :data:`BAR_MIN_CHUNKS` chunks.

    Returns
    -------
    Whatever ``fn`` returns, for all N rows. With N = 0, ``fn`` is called once on the
    empty slices, so the outputs have the right trailing shapes.

    Raises
    ------
    ValueError
        If the inputs differ in length or ``chunk`` < 1.
    """
    n = len(inputs[0])
    if chunk < 1 or any(len(a) != n for a in inputs):
        raise ValueError(
            f"map_chunks: need chunk >= 1 and inputs of one length, got {chunk} and "
            f"{[len(a) for a in inputs]}"
        )
    starts = range(0, max(n, 1), chunk)
    bar = tqdm(starts, desc=desc, disable=desc is None or len(starts) < BAR_MIN_CHUNKS, leave=False)
    parts = [fn(*(a[start : start + chunk] for a in inputs)) for start in bar]
    joined: T = _join(parts, dim)
    return joined


def _join(parts: list[Any], dim: int) -> Any:
    """Concatenate a list of like outputs (tensor, ndarray, None, tuple or dataclass) along ``dim``."""
    first = parts[0]
    if first is None:
        return None
    if isinstance(first, torch.Tensor):
        return torch.cat(parts, dim)
    if isinstance(first, np.ndarray):
        return np.concatenate(parts, dim)
    if isinstance(first, tuple):
        return tuple(_join(list(p), dim) for p in zip(*parts, strict=True))
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        joined = {f.name: _join([getattr(p, f.name) for p in parts], dim) for f in dataclasses.fields(first)}
        return dataclasses.replace(first, **joined)
    raise TypeError(f"map_chunks cannot join outputs of type {type(first).__name__}")
