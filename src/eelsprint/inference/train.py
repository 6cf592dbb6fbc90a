"""Training loops: the VAE (Pyro ELBO with KL annealing and free bits), the raw encoder, the GP."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import gpytorch
import numpy as np
import torch
from linear_operator.operators import DiagLinearOperator
from pyro.infer import TraceMeanField_ELBO
from tqdm.auto import tqdm

from eelsprint.config import ModelConfig, NuisanceConfig, TrainConfig
from eelsprint.data.augment import augment_library
from eelsprint.data.spectra import Library
from eelsprint.inference.chunks import map_chunks
from eelsprint.inference.runtime import CHUNK
from eelsprint.models.gp import LatentGPClassifier
from eelsprint.models.vae import ConvEncoder, SpectrumVAE, gaussian_kl

__all__ = [
    "VAEDiagnostics",
    "calibrate_scale",
    "gp_copies",
    "gp_training_set",
    "latent_training_set",
    "noisy_latent_training_set",
    "train_gp",
    "train_raw_encoder",
    "train_vae",
]


@dataclass(frozen=True)
class VAEDiagnostics:
    """How much the VAE's latent is used: KL to the prior per dimension (nats), averaged over data."""

    kl_per_dim: np.ndarray

    @property
    def kl_total(self) -> float:
        return float(self.kl_per_dim.sum())

    @property
    def active_dims(self) -> int:
        """Dimensions carrying more than 0.1 nats (the rest collapsed to the prior)."""
        return int((self.kl_per_dim > 0.1).sum())


#: Random stream of :func:`gp_copies` (apart from the encoders' copies, drawn from ``seed`` alone).
GP_COPIES_STREAM = 7

#: Library copies per step of the semi-supervised term (caps its cost at ~20 % of a VAE step).
LIBRARY_BATCH = 128


def _batches(n: int, size: int, generator: torch.Generator, min_batches: int = 1) -> list[torch.Tensor]:
    """Shuffled index batches of one epoch; small data are passed over again until ``min_batches``."""
    batches: list[torch.Tensor] = []
    while len(batches) < min_batches:
        batches += list(torch.randperm(n, generator=generator, device=generator.device).split(size))
    return batches


def _library_loss(
    probe: torch.nn.Linear, loc: torch.Tensor, scale: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """Cross-entropy of a linear probe on one latent draw of each labelled library copy.

    On a draw rather than the mean, so the classes must stand apart by more than
    the posterior's own width: a shrunken variance cannot fake separation.
    """
    z = loc + scale * torch.randn_like(loc)
    return torch.nn.functional.cross_entropy(probe(z), y)


def train_vae(
    vae: SpectrumVAE,
    x: torch.Tensor,
    config: TrainConfig,
    model: ModelConfig,
    progress: bool = True,
    library: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> VAEDiagnostics:
    """Fit the VAE on high-SNR spectra ``x`` (N, C).

    The loss is the negative ELBO of :meth:`SpectrumVAE.model`/``guide``
    (``TraceMeanField_ELBO``: analytic KL) with the KL weight annealed linearly
    from 0 to 1 over ``kl_anneal_epochs``, plus a free-bits penalty
    ``sum_d relu(free_bits - KL_d)`` (batch-mean KL per dimension) that keeps
    every latent dimension in use. With ``library = (spectra, class_index)``
    (the nuisance-augmented library), ``config.library_weight`` times the
    cross-entropy of a linear probe on their latent draws is added
    (:func:`_library_loss`): the semi-supervised term that makes the latent keep
    what separates the library's classes. Small data are passed over several
    times per epoch (at least ``config.min_batches`` steps per epoch).
    """
    generator = torch.Generator(x.device).manual_seed(config.seed)
    elbo = TraceMeanField_ELBO()
    supervised = library is not None and config.library_weight > 0
    lib_x, lib_y = library if library is not None else (x[:0], torch.zeros(0, dtype=torch.long))
    n_classes = int(lib_y.max()) + 1 if supervised else 1
    probe = torch.nn.Linear(model.latent_dim, n_classes).to(x.device)
    optim = torch.optim.Adam([*vae.parameters(), *probe.parameters()], lr=config.lr)
    vae.train()
    per_epoch = config.min_batches
    bar = tqdm(range(config.epochs), desc="VAE", disable=not progress, leave=False)
    for epoch in bar:
        beta = min(1.0, (epoch + 1) / config.kl_anneal_epochs) if config.kl_anneal_epochs else 1.0
        total, seen = 0.0, 0
        for idx in _batches(len(x), config.batch_size, generator, per_epoch):
            batch = x[idx]
            loss = elbo.differentiable_loss(vae.model, vae.guide, batch, beta) / len(idx)
            if model.free_bits > 0 and vae.last_posterior is not None:
                loc, scale = vae.last_posterior
                kl = gaussian_kl(loc, scale, torch.zeros_like(loc), torch.ones_like(scale)).mean(0)
                loss = loss + beta * torch.relu(model.free_bits - kl).sum()
            if supervised:
                size = min(len(idx), len(lib_x), LIBRARY_BATCH)
                pick = torch.randint(len(lib_x), (size,), generator=generator, device=generator.device)
                loc, scale = vae.encoder(lib_x[pick])
                loss = loss + config.library_weight * _library_loss(probe, loc, scale, lib_y[pick])
            optim.zero_grad()
            loss.backward()
            optim.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        bar.set_postfix(loss=f"{total / seen:.4g}", beta=f"{beta:.2f}")
    vae.eval()
    with torch.no_grad():
        loc, scale = map_chunks(vae.encoder, x, chunk=CHUNK)  # whole, its activations took 20x the data
        kl = gaussian_kl(loc, scale, torch.zeros_like(loc), torch.ones_like(scale)).mean(0)
    return VAEDiagnostics(kl.cpu().numpy())


def train_raw_encoder(
    raw: ConvEncoder,
    teacher: ConvEncoder,
    x_raw: torch.Tensor,
    x_target: torch.Tensor,
    config: TrainConfig,
    progress: bool = True,
    x_library: torch.Tensor | None = None,
) -> tuple[float, float]:
    """Fit ``raw`` to map a noisy spectrum to where the teacher puts its denoised twin.

    The loss is the Gaussian negative log-likelihood of the teacher's posterior
    mean under ``N(raw(x_raw))``: the raw mean learns the mapping and the raw
    variance its error, i.e. how unsure the mapping from this noisy spectrum is.
    (The teacher's own posterior width is not added: the classifier is trained on
    samples of the library's latent Gaussians and already carries it; counting it
    again here made the probabilities underconfident.) Half of every batch gets
    extra Gaussian noise of a random level up to three times the data's own
    residual noise, so the raw variance learns to grow with noise.

    A random ``config.variance_holdout`` of the spectra is held out of
    training and used to calibrate the variance (:func:`calibrate_scale`):
    dropout and the noise augmentation make the trained variance too wide
    (about 2x on the simulator) for the plain network used at inference.

    ``x_library`` (the nuisance-augmented library, clean) joins the training
    set with the data's own noise level added afresh in every batch, its target
    the teacher's latent mean of the clean spectrum: the raw encoder learns to
    put a noisy library spectrum where the classifier's training points are,
    which is what a small scan alone cannot teach it.

    Returns
    -------
    nll : float
        The final epoch's mean loss (nats per spectrum, without the constant).
    ratio : float
        Mean squared error over variance on the held-out spectra before calibration
        (1 = the variance was already calibrated; NaN when nothing was held out).
    """
    device = x_raw.device
    generator = torch.Generator(device).manual_seed(config.seed + 1)
    teacher.eval()
    with torch.no_grad():
        t_loc, _ = map_chunks(teacher, x_target, chunk=CHUNK)
    order = torch.randperm(len(x_raw), generator=generator, device=device)
    n_held = int(config.variance_holdout * len(x_raw)) if len(x_raw) >= 20 else 0
    held, fit = order[:n_held], order[n_held:]
    x_fit, t_fit = x_raw[fit], t_loc[fit]
    noise_sd = (x_fit - x_target[fit]).std(0, keepdim=True)
    own = torch.zeros(len(x_fit), 1, device=device)  # 1: a clean library spectrum that gets the data's noise
    if x_library is not None and len(x_library):
        with torch.no_grad():
            lib_loc, _ = teacher(x_library)
        x_fit, t_fit = torch.cat([x_fit, x_library]), torch.cat([t_fit, lib_loc])
        own = torch.cat([own, torch.ones(len(x_library), 1, device=device)])
    optim = torch.optim.Adam(raw.parameters(), lr=config.lr)
    raw.train()
    total = math.nan
    per_epoch = config.min_batches
    bar = tqdm(range(config.raw_epochs), desc="raw encoder", disable=not progress, leave=False)
    for _ in bar:
        total, seen = 0.0, 0
        for idx in _batches(len(x_fit), config.batch_size, generator, per_epoch):
            batch = x_fit[idx]
            noisy = torch.rand(len(idx), 1, generator=generator, device=device) < 0.5
            level = 3.0 * torch.rand(len(idx), 1, generator=generator, device=device) * noisy + own[idx]
            batch = batch + level * noise_sd * torch.randn(batch.shape, generator=generator, device=device)
            loc, scale = raw(batch)
            loss = (scale.log() + 0.5 * ((t_fit[idx] - loc) / scale) ** 2).sum(-1).mean()
            optim.zero_grad()
            loss.backward()
            optim.step()
            total += loss.item() * len(idx)
            seen += len(idx)
        total /= seen
        bar.set_postfix(nll=f"{total:.4g}")
    raw.eval()
    ratio = calibrate_scale(raw, x_raw[held], t_loc[held]) if n_held else math.nan
    return total, ratio


@torch.no_grad()
def calibrate_scale(raw: ConvEncoder, x: torch.Tensor, target: torch.Tensor) -> float:
    """Set ``raw.scale_factor`` so that the variance matches the squared error on ``(x, target)``.

    Per latent dimension, ``factor_d**2 = mean((target_d - loc_d)**2 / scale_d**2)``:
    the maximum-likelihood rescaling of a Gaussian's variance. No labels are needed;
    the targets are the teacher's latent means of the denoised spectra.

    Returns
    -------
    float
        The mean of ``factor_d**2`` over dimensions (below 1: the variance was too wide).
    """
    raw.scale_factor.fill_(1.0)
    loc, scale = raw(x)
    ratio = ((target - loc) / scale).pow(2).mean(0)
    raw.scale_factor.copy_(ratio.sqrt().clamp(0.05, 20.0))
    return float(ratio.mean())


def latent_training_set(
    encoder: ConvEncoder, spectra: torch.Tensor, labels: torch.Tensor, samples: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sample each spectrum's latent Gaussian ``samples`` times: a labelled latent set."""
    generator = torch.Generator(spectra.device).manual_seed(seed)
    with torch.no_grad():
        loc, scale = encoder(spectra)
    eps = torch.randn(samples, *loc.shape, generator=generator, device=loc.device)
    z = (loc + scale * eps).reshape(-1, loc.shape[-1])
    return z, labels.repeat(samples)


def noisy_latent_training_set(
    encoder: ConvEncoder,
    spectra: torch.Tensor,
    labels: torch.Tensor,
    noise: tuple[float, float],
    samples: int,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Each spectrum ``samples`` times with noise of variance ``alpha + beta * |spectrum|`` added,
    through the raw ``encoder``, one draw from each latent Gaussian: a labelled latent set as the
    classifier meets it at prediction (counting noise included)."""
    generator = torch.Generator(spectra.device).manual_seed(seed)
    x = spectra.repeat(samples, 1)
    sd = (noise[0] + noise[1] * x.abs()).sqrt()
    x = x + sd * torch.randn(x.shape, generator=generator, device=x.device)
    with torch.no_grad():
        loc, scale = map_chunks(encoder, x, chunk=CHUNK)
    z = loc + scale * torch.randn(loc.shape, generator=generator, device=loc.device)
    return z, labels.repeat(samples)


def gp_copies(library: Library, nuisance: NuisanceConfig, samples: int, seed: int) -> Library:
    """The library copies the GP learns from: ``samples`` per fingerprint (the fingerprint itself
    and ``samples - 1`` nuisance copies), each encoded once (:func:`gp_training_set` with one
    sample). Distinct copies rather than a few copies drawn many times through the encoder: the
    GP's boundary then depends less on which nuisance draws it saw (at a fixed encoder, the MXene
    realism series' accuracy over five seeds spread 0.018 with 25 copies drawn 4 times each,
    0.008 with 100 copies; model card, "Robustness"). Their own random stream, so that ``fit``
    and ``update`` draw the same copies."""
    copies = dataclasses.replace(nuisance, n_augment=samples - 1)
    return augment_library(library, copies, np.random.default_rng([seed, GP_COPIES_STREAM]))


def gp_training_set(
    kind: str,
    vae_encoder: ConvEncoder,
    raw: ConvEncoder,
    spectra: torch.Tensor,
    labels: torch.Tensor,
    noise: tuple[float, float] | None,
    samples: int,
    seed: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The GP's labelled latent set, as ``[train] gp_latents`` says: ``"noisy"``
    (:func:`noisy_latent_training_set` through ``raw``; needs ``noise``) or ``"clean"``
    (:func:`latent_training_set` through the VAE's encoder)."""
    if kind == "noisy" and noise is not None:
        return noisy_latent_training_set(raw, spectra, labels, noise, samples, seed)
    return latent_training_set(vae_encoder, spectra, labels, samples, seed)


def train_gp(
    z: torch.Tensor,
    y: torch.Tensor,
    n_classes: int,
    model_config: ModelConfig,
    config: TrainConfig,
    progress: bool = True,
) -> tuple[LatentGPClassifier, gpytorch.likelihoods.SoftmaxLikelihood]:
    """Fit the variational GP classifier (kernel hyperparameters included) on latent points.

    Inducing points start at k-means-like random picks of the training points,
    the same set for every class; lengthscales start at the data's spread.
    Full-batch Adam on the variational ELBO, learning rate on a cosine decay
    to a twentieth of ``config.gp_lr``. The expected log-likelihood only
    needs each point's marginal, so the softmax likelihood is evaluated on
    per-point marginals of f instead of GPyTorch's joint sample over the batch.
    """
    generator = torch.Generator(z.device).manual_seed(config.seed + 2)
    m = min(model_config.n_inducing, len(z))
    start = z[torch.randperm(len(z), generator=generator, device=z.device)[:m]]
    gp = LatentGPClassifier(start.expand(n_classes, m, z.shape[-1]).clone()).to(z.device)
    gp.covar_module.base_kernel.lengthscale = z.std(0).clamp_min(0.1).expand(n_classes, 1, -1)
    likelihood = gpytorch.likelihoods.SoftmaxLikelihood(
        num_features=n_classes, num_classes=n_classes, mixing_weights=False
    ).to(z.device)
    mll = gpytorch.mlls.VariationalELBO(likelihood, gp, num_data=len(z))
    optim = torch.optim.Adam([*gp.parameters(), *likelihood.parameters()], lr=config.gp_lr)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optim, config.gp_iterations, config.gp_lr / 20)
    gp.train()
    likelihood.train()
    bar = tqdm(range(config.gp_iterations), desc="GP classifier", disable=not progress, leave=False)
    for _ in bar:
        optim.zero_grad()
        loss = -mll(_marginals_only(gp(z)), y)
        loss.backward()
        optim.step()
        schedule.step()
        bar.set_postfix(loss=f"{loss.item():.4g}")
    gp.eval()
    likelihood.eval()
    return gp, likelihood


def _marginals_only(
    f: gpytorch.distributions.MultitaskMultivariateNormal,
) -> gpytorch.distributions.MultitaskMultivariateNormal:
    """The same per-point marginals with the cross-point covariance dropped (cheap to sample)."""
    return gpytorch.distributions.MultitaskMultivariateNormal(
        f.mean, DiagLinearOperator(f.variance.reshape(-1))
    )
