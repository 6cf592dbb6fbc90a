"""The training pipeline behind ``FingerprintClassifier.fit``, on preprocessed arrays.

library fit of the data (noise model, nuisance estimate) -> augmented library
(+ mixed pixels) -> Pyro VAE with the semi-supervised library term -> raw
encoder (data + noisy library copies) -> library latents (by default the raw encoder's, of
library copies with the data's noise) -> GP classifier ->
self-consistency and latent-information check (a model that fails its own
library is compared on augmented library copies with the spectrum-space fallback
of :mod:`eelsprint.inference.spectral`, which replaces it when better) -> OOD
standardisation.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from eelsprint.config import Config, NuisanceConfig
from eelsprint.config.sections import ESTIMATED
from eelsprint.data.augment import augment_library
from eelsprint.data.spectra import Library
from eelsprint.inference.features import NuisancePrior
from eelsprint.inference.ood import (
    OODScaler,
    estimate_nuisance,
    fit_library,
    library_features,
    noise_model,
)
from eelsprint.inference.selfcheck import LibraryCheck, check_library
from eelsprint.inference.spectral import SpectralPrior, choose_fallback
from eelsprint.inference.train import gp_copies, gp_training_set, train_gp, train_raw_encoder, train_vae
from eelsprint.inference.uncertainty import GPPosterior
from eelsprint.models.vae import ConvEncoder, SpectrumVAE

__all__ = ["WIDEN", "TrainedParts", "train_parts", "with_estimates"]


@dataclass(frozen=True)
class TrainedParts:
    """What ``fit`` learns: the networks, the GP's posterior, the library check and the diagnostics."""

    vae: SpectrumVAE
    raw: ConvEncoder
    gp: GPPosterior
    check: LibraryCheck
    prior: SpectralPrior | None
    diagnostics: dict[str, Any]


#: The data widen a configured nuisance range only where they show more than this many times it.
#: On the simulator's series, whose nuisance the defaults match, the estimates read 0.85-1.15 times
#: the defaults (measured, seeds 0-3: scale 0.068-0.086, shift 0.43-0.49 eV, tilt 0.032-0.034).
WIDEN = 1.5


def with_estimates(config: NuisanceConfig, estimate: dict[str, float]) -> NuisanceConfig:
    """``config`` with each range it names in ``estimate`` that the data clearly exceed widened.

    The ranges ``config.estimate`` names (``true``: all of :data:`~eelsprint.config.sections.ESTIMATED`,
    ``false``: none) become the data's estimate where it is more than :data:`WIDEN` times the
    configured value; the configured values are floors.
    """
    names = ESTIMATED if config.estimate is True else config.estimate or ()
    wider: dict[str, Any] = {
        k: estimate[k] for k in names if k in estimate and estimate[k] > WIDEN * getattr(config, k)
    }
    return dataclasses.replace(config, **wider)


def train_parts(
    x: np.ndarray, target: np.ndarray, lib: Library, cfg: Config, device: torch.device, progress: bool
) -> TrainedParts:
    """Train every part on ``device`` from preprocessed spectra ``x`` (N, C), their PCA twins and
    ``lib`` on their axis. Modules are initialised on the CPU (seeded global RNG), then moved."""
    rng = np.random.default_rng(cfg.train.seed)
    noise = noise_model(x, target)
    lib_fit = fit_library(x, lib.spectra, lib.energy, noise)
    estimate = estimate_nuisance(lib_fit, lib.spectra, noise)
    nuisance = with_estimates(cfg.nuisance, estimate)
    scan_nuisance = NuisancePrior.from_ranges(nuisance.shift_ev, nuisance.broaden_ev)
    _, scan, feature_prior = library_features(
        x, lib.spectra, lib.energy, noise, scan_nuisance, seed=cfg.train.seed, fit=lib_fit
    )
    augmented = augment_library(lib, nuisance, rng)
    scale = float(np.quantile(np.abs(np.concatenate([target, lib.spectra])), 0.99)) or 1.0

    n_channels = x.shape[-1]
    vae = SpectrumVAE(n_channels, cfg.model)
    raw = ConvEncoder(n_channels, cfg.model)
    for buffer in (vae.encoder.input_scale, vae.decoder.output_scale, raw.input_scale):
        buffer.fill_(scale)
    vae.to(device)
    raw.to(device)

    def t(a: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype, device=device)

    x_t = t(x)
    vae_x = t(np.concatenate([target, augmented.spectra]))
    lib_x = t(augmented.spectra)
    lib_y = t(augmented.class_index, torch.int64)
    diag = train_vae(vae, vae_x, cfg.train, cfg.model, progress, (lib_x, lib_y))
    raw_loss, variance_ratio = train_raw_encoder(
        raw,
        vae.encoder,
        x_t,
        t(target),
        cfg.train,
        progress,
        lib_x if cfg.train.library_weight > 0 else None,
    )
    copies = gp_copies(lib, nuisance, cfg.model.samples_per_fingerprint, cfg.train.seed)
    z, y = gp_training_set(
        cfg.train.gp_latents, vae.encoder, raw, t(copies.spectra), t(copies.class_index, torch.int64),
        noise, 1, cfg.train.seed,
    )  # fmt: skip
    gp = GPPosterior.from_model(train_gp(z, y, len(lib.classes), cfg.model, cfg.train, progress)[0])

    noise_sd = (x - target).std(0)
    check = check_library(raw, gp, lib, nuisance, x, noise_sd, cfg.preprocess.pca_components, cfg.train.seed)
    gp, prior, fallback = choose_fallback(raw, gp, check, lib, nuisance, noise)
    scaler = OODScaler.learn(scan, noise, feature_prior, scan_nuisance)
    diagnostics = {
        "kl_per_dim": [round(float(v), 4) for v in diag.kl_per_dim],
        "kl_total": round(diag.kl_total, 3),
        "active_dims": diag.active_dims,
        "raw_encoder_nll": round(raw_loss, 4),
        "raw_variance_ratio": None if math.isnan(variance_ratio) else round(variance_ratio, 4),
        "raw_scale_factor": [round(float(v), 4) for v in raw.scale_factor],
        "n_spectra": len(x),
        "gp_latents": cfg.train.gp_latents,
        "overlap_ev": [float(lib.energy[0]), float(lib.energy[-1])],
        "library_check": check.to_dict(),
        "nuisance_estimate": estimate,
        "nuisance_widened": {
            k: getattr(nuisance, k) for k in ESTIMATED if getattr(nuisance, k) != getattr(cfg.nuisance, k)
        },
        "ood": scaler.to_dict(),
        "spectral_prior": None if prior is None else prior.to_dict(),
        "fallback_choice": fallback,
    }
    return TrainedParts(vae, raw, gp, check, prior, diagnostics)
