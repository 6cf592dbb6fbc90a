"""The latent space as the paper judged it: silhouettes, t-SNE, denoised spectra, library Gaussians.

VAE latents are the raw encoder's latent means of the data (what eelsprint
classifies); PCA latents are the data's projections on as many principal
components. Both are scored with the same labels (Hollenbach et al. 2024,
Figs. 4, 6 and 7), and the decoder's reconstructions give a posterior-predictive
check of the spectra.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE
from sklearn.metrics import silhouette_score
from threadpoolctl import threadpool_limits

if TYPE_CHECKING:
    from eelsprint.classify import FingerprintClassifier

__all__ = [
    "ResidualStats",
    "class_mean_sd",
    "decode",
    "library_latents",
    "pca_latents",
    "residual_stats",
    "silhouette_per_frame",
    "tsne",
]


def pca_latents(x: np.ndarray, n_components: int, seed: int = 0) -> np.ndarray:
    """Projections of spectra (n, n_channels) on their first ``n_components`` principal components."""
    k = min(n_components, *x.shape)
    return PCA(n_components=k, random_state=seed).fit_transform(x)


def silhouette_per_frame(
    points: np.ndarray, labels: np.ndarray, frame_starts: np.ndarray, max_points: int = 2000, seed: int = 0
) -> list[float | None]:
    """Silhouette score (scikit-learn, Euclidean) of ``labels`` in ``points``, frame by frame.

    Parameters
    ----------
    points : ndarray of shape (n, n_features)
    labels : ndarray of int, shape (n,)
    frame_starts : ndarray of int, shape (n_frames,)
        Index of each frame's first point (frames contiguous, the first at 0).
    max_points : int
        Larger frames are scored on a random subset of this size.
    seed : int
        Seed of that subset.

    Returns
    -------
    list
        One score per frame; ``None`` where the frame holds fewer than 2 labels
        (or every point has its own label), which leaves the score undefined.
    """
    scores: list[float | None] = []
    for start, stop in zip(frame_starts, [*frame_starts[1:], len(points)], strict=True):
        lab = labels[start:stop]
        n_labels = len(np.unique(lab))
        if not 2 <= n_labels <= len(lab) - 1:
            scores.append(None)
            continue
        size = max_points if len(lab) > max_points else None
        scores.append(float(silhouette_score(points[start:stop], lab, sample_size=size, random_state=seed)))
    return scores


def tsne(points: np.ndarray, seed: int = 0) -> np.ndarray:
    """Two-dimensional t-SNE (scikit-learn, PCA initialisation) of ``points`` (n, d) -> (n, 2).

    Runs on one OpenMP thread: for the report's subset (about a thousand points)
    that takes seconds, while OpenMP threads competing with torch's on a busy
    machine were seen to take ten times longer.
    """
    perplexity = float(min(30.0, max(2.0, (len(points) - 1) / 3)))
    with threadpool_limits(limits=1, user_api="openmp"):
        return TSNE(n_components=2, init="pca", perplexity=perplexity, random_state=seed).fit_transform(
            points
        )


@torch.no_grad()
def decode(clf: FingerprintClassifier, latent: np.ndarray) -> np.ndarray:
    """The VAE decoder's spectra (n, n_channels) for latent points (n, latent_dim)."""
    return clf.vae_.decoder(torch.as_tensor(latent, dtype=torch.float32)).double().numpy()


@torch.no_grad()
def library_latents(clf: FingerprintClassifier) -> tuple[np.ndarray, np.ndarray]:
    """The VAE encoder's Gaussian (loc, scale) of every library spectrum, each (n_library, latent_dim)."""
    loc, scale = clf.vae_.encoder(torch.as_tensor(clf.library_.spectra, dtype=torch.float32))
    return loc.double().numpy(), scale.double().numpy()


def class_mean_sd(spectra: np.ndarray, labels: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of the spectra given each label, each (n_classes, n_channels).

    Classes with no spectrum get NaN.
    """
    mean = np.full((n_classes, spectra.shape[-1]), np.nan)
    sd = np.full_like(mean, np.nan)
    for c in range(n_classes):
        members = spectra[labels == c]
        if len(members):
            mean[c], sd[c] = members.mean(0), members.std(0)
    return mean, sd


@dataclass(frozen=True)
class ResidualStats:
    """Residuals ``observed - decoded`` of the posterior-predictive check.

    Attributes
    ----------
    rms : list of float
        Root-mean-square residual per frame.
    relative_rms : list of float
        ``rms`` divided by the RMS of the observed spectra, per frame.
    mean : list of float
        Mean residual (bias) per frame.
    r2 : float
        Share of the observed spectra's variance (about their channel means) the
        decoded spectra explain, all spectra together.
    channel_mean, channel_sd : ndarray of shape (n_channels,)
        Mean and standard deviation of the residual at each channel.
    """

    rms: list[float]
    relative_rms: list[float]
    mean: list[float]
    r2: float
    channel_mean: np.ndarray
    channel_sd: np.ndarray

    def to_dict(self) -> dict[str, Any]:
        """The scalar statistics (JSON friendly)."""
        return {"rms": self.rms, "relative_rms": self.relative_rms, "mean": self.mean, "r2": self.r2}


def residual_stats(observed: np.ndarray, decoded: np.ndarray, frame_starts: np.ndarray) -> ResidualStats:
    """Residual statistics of decoded against observed spectra (both (n, n_channels)), per frame."""
    residual = observed - decoded
    bounds = list(zip(frame_starts, [*frame_starts[1:], len(observed)], strict=True))
    rms = [float(np.sqrt((residual[a:b] ** 2).mean())) for a, b in bounds]
    scale = [float(np.sqrt((observed[a:b] ** 2).mean())) or 1.0 for a, b in bounds]
    centred = observed - observed.mean(0)
    r2 = 1.0 - float((residual**2).sum() / max((centred**2).sum(), 1e-300))
    return ResidualStats(
        rms=rms,
        relative_rms=[r / s for r, s in zip(rms, scale, strict=True)],
        mean=[float(residual[a:b].mean()) for a, b in bounds],
        r2=r2,
        channel_mean=residual.mean(0),
        channel_sd=residual.std(0),
    )
