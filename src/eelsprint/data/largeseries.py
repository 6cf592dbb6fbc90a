"""Synthetic series larger than memory, written to a Zarr store a block of frames at a time.

Each block of frames is one :func:`eelsprint.data.realism.realistic_series` (every nuisance of
a real acquisition, truth kept), seeded ``config.seed + block``; it is written and dropped
before the next is made, so the memory used is one block's whatever the series' size. The
store holds ``x`` (frame, y, x, channel) in library units (background in), ``energy`` and the
truth ``labels`` (frame, y, x; -1 out of library), and is read back by
:func:`eelsprint.data.io.open_spectra`.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import numpy as np

from eelsprint.data.realism import RealismConfig, realistic_series
from eelsprint.data.resultstore import writing
from eelsprint.data.spectra import Library
from eelsprint.exceptions import ConfigError

__all__ = ["write_large_series"]


def write_large_series(
    path: str | os.PathLike[str],
    library: Library,
    n_frames: int,
    config: RealismConfig | None = None,
    frames_per_block: int = 1,
) -> Path:
    """Write a realistic series of ``n_frames`` frames to the Zarr store ``path``, block by block.

    Parameters
    ----------
    path : path
        The ``.zarr`` folder to create (replaced if it exists).
    library : Library
        Background-free fingerprints, as for :func:`realistic_series`.
    n_frames : int
        Frames in the series.
    config : RealismConfig, optional
        Scan shape, dose and nuisance settings (its ``n_frames`` is ignored); the block ``b``
        is drawn with seed ``config.seed + b``.
    frames_per_block : int
        Frames generated (and held in memory) at a time; also the store's chunk along frames.

    Returns
    -------
    Path
        The store written.

    Raises
    ------
    ConfigError
        ``n_frames`` or ``frames_per_block`` below 1.
    OutputError
        If the series cannot be written (an ``OSError``, e.g. a full disk).
    """
    import dask.array as da
    import xarray as xr
    import zarr

    if n_frames < 1 or frames_per_block < 1:
        raise ConfigError(
            f"need n_frames >= 1 and frames_per_block >= 1, got {n_frames} and {frames_per_block}"
        )
    cfg, path = config or RealismConfig(), Path(path)
    starts = range(0, n_frames, frames_per_block)
    with writing(path, "the series"):
        for block, start in enumerate(starts):
            frames = min(frames_per_block, n_frames - start)
            settings = dataclasses.replace(cfg, n_frames=frames, seed=cfg.seed + block)
            series = realistic_series(library, settings)
            if block == 0:
                if path.exists():
                    shutil.rmtree(path)
                nav, block_nav = (n_frames, *cfg.shape), (frames_per_block, *cfg.shape)
                channels = series.counts.n_channels
                x = da.zeros((*nav, channels), dtype=np.float32, chunks=(*block_nav, channels))
                template = xr.Dataset(
                    {
                        "x": (("frame", "y", "x", "channel"), x),
                        "labels": (("frame", "y", "x"), da.zeros(nav, dtype=np.int32, chunks=block_nav)),
                        "energy": ("channel", series.counts.energy),
                    },
                    attrs={"source": series.counts.source, "gain": series.gain},
                )
                template.to_zarr(path, mode="w", compute=False, consolidated=False)
                arrays = dict(zarr.open_group(path, mode="r+").arrays())
            where = slice(start, start + frames)
            arrays["x"][where] = series.spectra.data.astype(np.float32)
            arrays["labels"][where] = series.labels.astype(np.int32)
    return path
