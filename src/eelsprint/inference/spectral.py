"""The spectrum-space fallback: class evidence from the spectra themselves, for a latent that fails.

When the raw encoder cannot tell the library's classes apart but the spectra can
(the self-check of :mod:`eelsprint.inference.selfcheck` fails), the model does not
give up: it is compared with a fallback whose GP is a wide zero-mean prior with its
mean moved to the class log-probabilities of a noise-weighted least-squares fit of
each pixel by each fingerprint,

    x ~ l_k + d l_k'   (+ b + c t with the ``"background"`` design)

with weights from the data's heteroscedastic noise model (:func:`~eelsprint.inference.ood.noise_model`).
The scale is not free, so an intensity-coded library keeps its information. A
class's residual is its best member's; ``log p_k = log_softmax(-rss_k / (2 T))``.
The design and the temperature ``T`` are chosen by the negative log-likelihood
of the whole tempered prediction on labelled, nuisance-augmented noisy library
copies: the library is the only labelled information, no data label is used.
The fallback replaces the model when its NLL on those copies is lower
(:func:`choose_fallback`). The prior's variance stays in the prediction, so the
epistemic term stays high wherever the spectra do not decide clearly.
"""

from __future__ import annotations

import dataclasses
from dataclasses import asdict, dataclass

import numpy as np
import torch
from scipy.special import log_softmax

from eelsprint.config import NuisanceConfig
from eelsprint.data.augment import augment_library
from eelsprint.data.spectra import Library
from eelsprint.inference.ood import with_noise
from eelsprint.inference.selfcheck import LibraryCheck, temper
from eelsprint.inference.uncertainty import GPPosterior, predict_fast, sigma_point_softmax
from eelsprint.models.vae import ConvEncoder

__all__ = [
    "DESIGNS",
    "SpectralPrior",
    "choose_fallback",
    "class_residuals",
    "fit_spectral_prior",
    "gp_offset",
]

#: The nuisance terms profiled out of each fit: energy shift only, or shift plus offset and tilt.
DESIGNS = ("shift", "background")
#: Nuisance-augmented copies per library spectrum that calibrate the prior.
COPIES = 64
_TEMPERATURES = np.exp(np.linspace(np.log(0.05), np.log(200.0), 49))


def class_residuals(x: np.ndarray, library: Library, noise: tuple[float, float], design: str) -> np.ndarray:
    """Weighted residual sum of squares of each pixel under each class, (n_spectra, n_classes).

    Parameters
    ----------
    x : ndarray of shape (n_spectra, n_channels)
        Pixels on the library's axis.
    library : Library
    noise : (alpha, beta)
        ``var = alpha + beta * |fingerprint|``.
    design : {"shift", "background"}
        The free terms besides the fingerprint (see the module's notes).
    """
    spectra, energy = library.spectra, library.energy
    columns = [np.gradient(spectra, energy, axis=-1)]
    if design == "background":
        ramp = np.broadcast_to(np.linspace(-1.0, 1.0, spectra.shape[-1]), spectra.shape)
        columns += [np.ones_like(spectra), ramp]
    basis = np.stack(columns, -1)  # (K, C, P)
    weight = 1.0 / (noise[0] + noise[1] * np.abs(spectra))  # (K, C)
    rss = np.empty((len(x), len(spectra)))
    for k in range(len(spectra)):
        residual = x - spectra[k]
        weighted = basis[k] * weight[k][:, None]
        gram = basis[k].T @ weighted
        gram += (1e-9 * np.trace(gram) + 1e-30) * np.eye(len(gram))  # a flat (zero) fingerprint
        rhs = residual @ weighted  # (N, P)
        coef = np.linalg.solve(gram, rhs.T).T
        rss[:, k] = np.maximum((residual**2) @ weight[k] - (coef * rhs).sum(-1), 0.0)
    index = library.class_index
    return np.stack([rss[:, index == c].min(1) for c in range(len(library.classes))], 1)


@dataclass(frozen=True)
class SpectralPrior:
    """The fallback's settings, stored in the model's diagnostics (``"spectral_prior"``)."""

    design: str
    temperature: float
    alpha: float
    beta: float
    copies_nll: float
    copies_accuracy: float

    def log_proba(self, x: np.ndarray, library: Library) -> np.ndarray:
        """Class log-probabilities of pixels ``x`` on the library's axis, (n_spectra, n_classes)."""
        rss = class_residuals(x, library, (self.alpha, self.beta), self.design)
        return log_softmax(-0.5 * rss / self.temperature, axis=-1)

    def to_dict(self) -> dict[str, float | str]:
        """JSON-ready."""
        return {k: v if isinstance(v, str) else float(v) for k, v in asdict(self).items()}


def gp_offset(
    prior: SpectralPrior | None, x: np.ndarray, library: Library, like: torch.Tensor
) -> torch.Tensor | None:
    """The prior's class log-probabilities of ``x`` as the GP's offset (``like``'s dtype and device)."""
    if prior is None:
        return None
    return torch.as_tensor(prior.log_proba(x, library), dtype=like.dtype, device=like.device)


@dataclass(frozen=True)
class _Copies:
    """Nuisance-augmented noisy library copies, their latent Gaussians and their classes."""

    x: np.ndarray
    loc: torch.Tensor
    var: torch.Tensor
    own: torch.Tensor


def _copies(
    raw: ConvEncoder, library: Library, nuisance: NuisanceConfig, noise: tuple[float, float], seed: int
) -> _Copies:
    rng = np.random.default_rng(seed)
    # Pure copies: a mixture is no single fingerprint's least-squares fit, and mixed copies moved
    # the fallback's temperature the wrong way on the Cu series (ECE 0.064 -> 0.090, model card).
    pure = dataclasses.replace(nuisance, n_augment=COPIES, mix_share=0.0)
    copies = augment_library(library, pure, rng)
    x = with_noise(copies.spectra, noise, rng)
    device = next(raw.parameters()).device
    loc, scale = raw(torch.as_tensor(x, dtype=torch.float32, device=device))
    return _Copies(x, loc, scale.pow(2), torch.as_tensor(copies.class_index, device=device))


def _nll_accuracy(proba: torch.Tensor, own: torch.Tensor) -> tuple[float, float]:
    nll = float(-proba.gather(1, own[:, None]).clamp_min(1e-12).log().mean())
    return nll, float((proba.argmax(-1) == own).float().mean())


@torch.no_grad()
def fit_spectral_prior(
    raw: ConvEncoder,
    gp: GPPosterior,
    library: Library,
    nuisance: NuisanceConfig,
    noise: tuple[float, float],
    seed: int = 0,
) -> SpectralPrior:
    """Choose the design and temperature that minimise the tempered model's NLL on library copies.

    Parameters
    ----------
    raw : ConvEncoder
        The fitted raw encoder.
    gp : GPPosterior
        The GP after :func:`~eelsprint.inference.selfcheck.temper`.
    library : Library
        The clean library on the model's axis.
    nuisance : NuisanceConfig
        The augmentation of the copies (:data:`COPIES` per spectrum).
    noise : (alpha, beta)
        The data's noise model; the copies get noise drawn from it.
    seed : int
        Of the copies; fixed by default, so that a failed latent gives the same fallback for
        every training seed (the tempered GP does not depend on the latent).
    """
    return _fit_prior(gp, _copies(raw, library, nuisance, noise, seed), library, noise)


def _fit_prior(
    gp: GPPosterior, copies: _Copies, library: Library, noise: tuple[float, float]
) -> SpectralPrior:
    mean, var_enc, var_gp = gp.uncertain_moments(copies.loc, copies.var)
    best: SpectralPrior | None = None
    for design in DESIGNS:
        rss = class_residuals(copies.x, library, noise, design)
        rss_t = torch.as_tensor(rss, dtype=mean.dtype, device=mean.device)
        for temperature in _TEMPERATURES:
            offset = torch.log_softmax(-0.5 * rss_t / float(temperature), -1)
            nll, accuracy = _nll_accuracy(sigma_point_softmax(mean + offset, var_enc + var_gp)[0], copies.own)
            if best is None or nll < best.copies_nll:
                best = SpectralPrior(design, float(temperature), noise[0], noise[1], nll, accuracy)
    assert best is not None
    return best


@torch.no_grad()
def choose_fallback(
    raw: ConvEncoder,
    gp: GPPosterior,
    check: LibraryCheck,
    library: Library,
    nuisance: NuisanceConfig,
    noise: tuple[float, float],
    seed: int = 0,
) -> tuple[GPPosterior, SpectralPrior | None, dict[str, float | bool] | None]:
    """The GP to predict with, the spectral prior if it is used, and the record of the choice.

    A model that passes its self-check is kept as it is (no record). One that fails
    it is compared with the fallback (tempered GP + fitted spectral prior) by the NLL
    on the same nuisance-augmented noisy library copies; the better one is used.
    The latent can fail the clean self-check and still beat the spectra under the
    data's nuisance (measured on the MXene DFT library, see the model card).
    """
    if not check.fails_own_library:
        return gp, None, None
    copies = _copies(raw, library, nuisance, noise, seed)
    model_nll, model_accuracy = _nll_accuracy(predict_fast(gp, copies.loc, copies.var).proba, copies.own)
    tempered = temper(gp, check)
    prior = _fit_prior(tempered, copies, library, noise)
    used = prior.copies_nll < model_nll
    record: dict[str, float | bool] = {
        "used": used,
        "model_nll": round(model_nll, 4),
        "model_accuracy": round(model_accuracy, 4),
        "fallback_nll": round(prior.copies_nll, 4),
        "fallback_accuracy": round(prior.copies_accuracy, 4),
    }
    return (tempered, prior, record) if used else (gp, None, record)
