"""The training pipeline behind ``FingerprintClassifier.fit``, on preprocessed arrays.

library fit of the data (noise model, nuisance estimate) -> augmented library
(+ mixed pixels) -> Pyro VAE with the semi-supervised library term -> raw
encoder (data + noisy library copies) -> library latents -> GP classifier ->
self-consistency and latent-information check (a GP that fails its own
library is tempered toward its prior: high epistemic uncertainty) -> OOD
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
from eelsprint.data.augment import augment_library
from eelsprint.data.spectra import Library
from eelsprint.inference.chunks import map_chunks
from eelsprint.inference.ood import OODScaler, estimate_nuisance, fit_library, noise_model
from eelsprint.inference.selfcheck import LibraryCheck, check_library, temper
from eelsprint.inference.train import latent_training_set, train_gp, train_raw_encoder, train_vae
from eelsprint.inference.uncertainty import GPPosterior, predict_fast
from eelsprint.models.vae import ConvEncoder, SpectrumVAE

__all__ = ["TrainedParts", "train_parts", "with_estimates"]


@dataclass(frozen=True)
class TrainedParts:
    """What ``fit`` learns: the networks, the GP's posterior, the library check and the diagnostics."""

    vae: SpectrumVAE
    raw: ConvEncoder
    gp: GPPosterior
    check: LibraryCheck
    diagnostics: dict[str, Any]


def with_estimates(config: NuisanceConfig, estimate: dict[str, float]) -> NuisanceConfig:
    """``config`` with the data's estimated ranges when ``config.estimate`` is set, else unchanged."""
    if not config.estimate:
        return config
    return dataclasses.replace(
        config,
        scale_sd=estimate["scale_sd"],
        shift_ev=estimate["shift_ev"],
        background_tilt=estimate["background_tilt"],
    )


@torch.no_grad()
def _epistemic(raw: ConvEncoder, gp: GPPosterior, x: torch.Tensor, batch: int) -> np.ndarray:
    def epistemic(chunk: torch.Tensor) -> torch.Tensor:
        loc, scale = raw(chunk)
        return predict_fast(gp, loc, scale.pow(2)).epistemic

    return map_chunks(epistemic, x, chunk=batch).cpu().numpy()


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
    per_spectrum = math.ceil(cfg.model.samples_per_fingerprint / (1 + nuisance.n_augment))
    z, y = latent_training_set(vae.encoder, lib_x, lib_y, per_spectrum, cfg.train.seed)
    gp = GPPosterior.from_model(train_gp(z, y, len(lib.classes), cfg.model, cfg.train, progress)[0])

    noise_sd = (x - target).std(0)
    check = check_library(raw, gp, lib, nuisance, x, noise_sd, cfg.preprocess.pca_components, cfg.train.seed)
    gp = temper(gp, check, len(lib.classes))
    scaler = OODScaler.learn(lib_fit, _epistemic(raw, gp, x_t, cfg.inference.batch_size), noise)
    diagnostics = {
        "kl_per_dim": [round(float(v), 4) for v in diag.kl_per_dim],
        "kl_total": round(diag.kl_total, 3),
        "active_dims": diag.active_dims,
        "raw_encoder_nll": round(raw_loss, 4),
        "raw_variance_ratio": None if math.isnan(variance_ratio) else round(variance_ratio, 4),
        "raw_scale_factor": [round(float(v), 4) for v in raw.scale_factor],
        "n_spectra": len(x),
        "overlap_ev": [float(lib.energy[0]), float(lib.energy[-1])],
        "library_check": check.to_dict(),
        "nuisance_estimate": estimate,
        "ood": scaler.to_dict(),
    }
    return TrainedParts(vae, raw, gp, check, diagnostics)
