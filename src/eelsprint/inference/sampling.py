"""Posterior samples of per-pixel class probabilities and of per-frame class fractions.

Each draw takes one latent ``z ~ N(mu, diag(var))`` from the raw encoder and one
class-function value ``f ~`` the GP's per-point marginal at ``z``; its
probabilities are ``softmax(f)``. The draws are stored as an ArviZ
``InferenceData`` (group ``posterior_predictive``) so that ArviZ summaries
(``az.summary``, ``az.hdi``) work on them.

Examples
--------
>>> import numpy as np
>>> draws = np.full((50, 4, 2), 0.5)
>>> fractions = fraction_draws(draws, np.array([0, 2]), seed=0)
>>> fractions.shape
(50, 2, 2)
"""

from __future__ import annotations

from typing import Any

import arviz as az
import numpy as np
import torch

from eelsprint.inference.chunks import map_chunks
from eelsprint.inference.metrics import draw_labels
from eelsprint.inference.uncertainty import GPPosterior

__all__ = ["fraction_draws", "fraction_intervals", "sample_class_probabilities", "to_inference_data"]


@torch.no_grad()
def sample_class_probabilities(
    gp: GPPosterior,
    mu: np.ndarray,
    var: np.ndarray,
    n_draws: int = 100,
    seed: int = 0,
    batch_size: int = 512,
    progress: bool = False,
    offset: np.ndarray | None = None,
) -> np.ndarray:
    """Monte Carlo draws of every spectrum's class probabilities.

    Parameters
    ----------
    gp : GPPosterior
        The fitted classifier's ``gp_``.
    mu, var : ndarray of shape (n_spectra, latent_dim)
        The raw encoder's latent mean and variance.
    n_draws : int
        Draws per spectrum.
    seed : int
        Seed of the draws.
    batch_size : int
        Spectra per chunk.
    progress : bool
        Show a progress bar.
    offset : ndarray of shape (n_spectra, n_classes), optional
        Added to f (the spectral fallback's class log-probabilities, :mod:`eelsprint.inference.spectral`).

    Returns
    -------
    ndarray of float32, shape (n_draws, n_spectra, n_classes)
    """
    generator = torch.Generator().manual_seed(seed)
    mu_t = torch.as_tensor(mu, dtype=torch.float32)
    sd_t = torch.as_tensor(var, dtype=torch.float32).sqrt()
    d = mu_t.shape[-1]
    shift = torch.zeros(len(mu_t), len(gp.constant)) if offset is None else torch.as_tensor(offset).float()

    def draw(m: torch.Tensor, s: torch.Tensor, o: torch.Tensor) -> torch.Tensor:
        z = m + s * torch.randn(n_draws, *m.shape, generator=generator)
        f_mean, f_var = gp.marginals(z.reshape(-1, d))
        f = f_mean + f_var.sqrt() * torch.randn(f_mean.shape, generator=generator)
        return torch.softmax(f.view(n_draws, len(m), -1) + o, -1)

    desc = "posterior draws" if progress else None
    return map_chunks(draw, mu_t, sd_t, shift, chunk=batch_size, dim=1, desc=desc).numpy()


def fraction_draws(proba_draws: np.ndarray, frame_starts: np.ndarray, seed: int = 0) -> np.ndarray:
    """Posterior draws of each frame's class fractions.

    In every draw each spectrum gets a label sampled from that draw's
    probabilities; a frame's fraction of class ``c`` is the share of its spectra
    labelled ``c``.

    Parameters
    ----------
    proba_draws : ndarray of shape (n_draws, n_spectra, n_classes)
        From :func:`sample_class_probabilities`.
    frame_starts : ndarray of int, shape (n_frames,)
        Index of each frame's first spectrum; frames are contiguous, in order,
        the first starting at 0.
    seed : int
        Seed of the label draws.

    Returns
    -------
    ndarray of shape (n_draws, n_frames, n_classes)
    """
    labels = draw_labels(proba_draws, np.random.default_rng(seed))
    onehot = labels[..., None] == np.arange(proba_draws.shape[-1])
    counts = np.add.reduceat(onehot.astype(np.float64), frame_starts, axis=1)
    sizes = np.diff(np.append(frame_starts, proba_draws.shape[1]))
    return counts / sizes[None, :, None]


def to_inference_data(
    proba_draws: np.ndarray,
    fractions: np.ndarray,
    classes: np.ndarray,
    frames: list[str],
    constant: dict[str, np.ndarray] | None = None,
    attrs: dict[str, Any] | None = None,
) -> az.InferenceData:
    """Pack the draws as ArviZ ``InferenceData`` (one chain) with a ``posterior_predictive`` group.

    Variables: ``proba`` (chain, draw, pixel, class), the class probabilities of
    every spectrum in input order; ``fraction`` (chain, draw, frame, class).
    ``constant`` arrays of shape (n_spectra,) (e.g. each pixel's frame index)
    go to the ``constant_data`` group on the ``pixel`` dimension.
    """
    constant = constant or {}
    return az.from_dict(
        posterior_predictive={"proba": proba_draws[None], "fraction": fractions[None]},
        constant_data=constant or None,
        coords={"pixel": np.arange(proba_draws.shape[1]), "class": np.asarray(classes, str), "frame": frames},
        dims={
            "proba": ["pixel", "class"],
            "fraction": ["frame", "class"],
            **{k: ["pixel"] for k in constant},
        },
        attrs=attrs or {},
    )


def fraction_intervals(idata: az.InferenceData, hdi_prob: float = 0.94) -> dict[str, np.ndarray]:
    """Posterior mean and highest-density interval (``az.hdi``) of every frame's class fractions.

    Returns
    -------
    dict
        ``mean``, ``low`` and ``high``, each of shape (n_frames, n_classes).
    """
    fraction = idata["posterior_predictive"]["fraction"]
    interval = az.hdi(fraction, hdi_prob=hdi_prob)["fraction"]
    return {
        "mean": fraction.mean(("chain", "draw")).values,
        "low": interval.sel(hdi="lower").values,
        "high": interval.sel(hdi="higher").values,
    }
