"""Fit on a series larger than memory: an out-of-core PCA target and a stratified pixel subsample.

One pass over the chunks, one chunk in memory at a time, gives

1. an :class:`~sklearn.decomposition.IncrementalPCA` of the preprocessed spectra
   (``partial_fit`` on every chunk; :attr:`LargeFit.n_seen` counts the spectra it saw, so a
   pass that skipped chunks shows), the VAE's high-SNR target;
2. a random subsample of pixels, the same number from every frame (first navigation axis),
   on which the encoders and the classifier train in memory.

The estimator is then fitted as usual (:meth:`FingerprintClassifier.fit`) on the subsample,
with the out-of-core PCA as its ``denoiser``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.decomposition import IncrementalPCA
from tqdm.auto import tqdm

from eelsprint.classify import FingerprintClassifier
from eelsprint.config import Config
from eelsprint.data.lazy import LazySpectra
from eelsprint.data.preprocess import crop, library_on_axis, preprocess
from eelsprint.data.spectra import Library, Spectra
from eelsprint.exceptions import ConfigError

__all__ = ["LargeFit", "fit_large", "stream_inputs"]


@dataclass(frozen=True)
class LargeFit:
    """What :func:`fit_large` did."""

    model: FingerprintClassifier
    n_spectra: int  # in the series
    n_seen: int  # by the incremental PCA
    n_subsample: int  # the encoders and the GP trained on


def _model_ready(block: Spectra, library: Library, cfg: Config) -> np.ndarray:
    """A chunk preprocessed and cropped to the library as :meth:`FingerprintClassifier.fit` does."""
    spectra = preprocess(block, cfg.preprocess)
    lib = library_on_axis(library, spectra.energy, cfg.preprocess, cfg.library.measured)
    return crop(spectra, (lib.energy[0], lib.energy[-1])).flat()


def _chosen(nav_shape: tuple[int, ...], n: int, seed: int) -> np.ndarray:
    """A mask over the flat pixels: ``n`` random ones, split evenly over the frames (first axis)."""
    total = int(np.prod(nav_shape))
    n, frames = min(n, total), nav_shape[0] if nav_shape else 1
    rng = np.random.default_rng(seed)
    per_frame = total // frames
    counts = np.full(frames, n // frames)
    counts[rng.choice(frames, n % frames, replace=False)] += 1
    keep = np.zeros(total, bool)
    for f, c in enumerate(counts):
        keep[f * per_frame + rng.choice(per_frame, c, replace=False)] = True
    return keep


def stream_inputs(
    lazy: LazySpectra, library: Library, cfg: Config, n: int, progress: bool = False,
    batch_bytes: int | None = None,
) -> tuple[IncrementalPCA, int, Spectra]:  # fmt: skip
    """One pass over the chunks: the incremental PCA, the spectra it saw, and the subsample.

    Each chunk is read once and preprocessed ``batch_bytes`` at a time (default: whole). The
    subsample (``n`` raw spectra split evenly over the frames, seeded by ``cfg.train.seed``)
    comes back flat, shape (n, n_channels), in file order. Chunks smaller than the number of
    PCA components are pooled with the next ones.

    Raises
    ------
    ConfigError
        Fewer spectra than ``cfg.preprocess.pca_components``.
    """
    k = cfg.preprocess.pca_components
    keep = _chosen(lazy.nav_shape, n, cfg.train.seed)
    flat_index = np.arange(keep.size).reshape(lazy.nav_shape or (1,))
    pca, pending, seen = IncrementalPCA(n_components=k), [], 0
    held: list[np.ndarray] = []  # the last full batch, fitted once the next one is full
    picked: list[np.ndarray] = []
    rows: list[np.ndarray] = []
    bar = tqdm(total=keep.size, desc="spectra", unit_scale=True, disable=not progress)
    for region, block in lazy.blocks(batch_bytes):
        bar.update(block.flat().shape[0])
        index = flat_index[region].ravel()
        picked.append(index[keep[index]])
        rows.append(block.flat()[keep[index]])
        pending.append(_model_ready(block, library, cfg))
        if sum(len(p) for p in pending) >= k:
            if held:
                pca.partial_fit(held[0])
                seen += len(held[0])
            held, pending = [np.concatenate(pending)], []
    bar.close()
    tail = np.concatenate([*held, *pending]) if held or pending else np.empty((0, 0))
    if len(tail) < k:
        raise ConfigError(f"{lazy.source}: {len(tail)} spectra, fewer than pca_components ({k})")
    pca.partial_fit(tail)  # the last batch with any short tail
    seen += len(tail)
    order = np.argsort(np.concatenate(picked))
    return pca, seen, Spectra(np.concatenate(rows)[order], lazy.energy, lazy.source)


def fit_large(
    lazy: LazySpectra, library: Library, config: Config | None = None, n_subsample: int = 50_000,
    progress: bool = False, batch_bytes: int | None = None,
) -> LargeFit:  # fmt: skip
    """Fit a :class:`FingerprintClassifier` on a series read chunk by chunk (see the module docstring).

    Parameters
    ----------
    lazy : LazySpectra
        The series; one chunk (plus the subsample) is in memory at a time.
    library : Library
    config : Config, optional
    n_subsample : int
        Spectra the encoders and the classifier train on, spread evenly over the frames.
    progress : bool
    batch_bytes : int, optional
        Bytes of spectra preprocessed at a time within a chunk (default: a whole chunk).

    Returns
    -------
    LargeFit
    """
    cfg = config or Config()
    if n_subsample < 2:
        raise ConfigError(f"n_subsample must be at least 2, got {n_subsample}")
    pca, seen, sample = stream_inputs(lazy, library, cfg, n_subsample, progress, batch_bytes)
    model = FingerprintClassifier(config=cfg, progress=progress).fit(sample, library, denoiser=pca)
    return LargeFit(model, int(np.prod(lazy.nav_shape)), seen, len(sample.flat()))
