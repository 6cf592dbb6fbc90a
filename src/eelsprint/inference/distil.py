"""Distilling the GP's predictive into the dense :class:`~eelsprint.models.head.UncertaintyHead`.

The teacher is the GP predictive integrated over the raw encoder's latent Gaussian
(:func:`~eelsprint.inference.uncertainty.predict_fast`, or Monte Carlo with ``teacher="exact"``).
It labels a set of latent Gaussians ``(mu, var)`` that covers what the head will see
and the places where it must say "I don't know":

* the raw encoder's moments of the training spectra (in distribution);
* the moments of noisier copies of them, re-encoded (larger latent variance);
* jittered means with rescaled variances, and interpolations between spectra
  (class boundaries, mixtures);
* points far from the data in random directions (the GP reverts to its prior there:
  high epistemic uncertainty; the head's soft-clipped features reach that region).

The head is fitted to the teacher's probabilities (KL), its aleatoric and epistemic
terms (squared error, nats) and its variance split (squared error of logs). A tenth
of the in-distribution points is held out and the agreement on it is returned.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch.nn import functional as F

from eelsprint.config import HeadConfig
from eelsprint.inference.chunks import map_chunks
from eelsprint.inference.runtime import torch_threads
from eelsprint.inference.uncertainty import GPPosterior, Prediction, predict_exact, predict_fast
from eelsprint.models.head import UncertaintyHead
from eelsprint.models.vae import ConvEncoder

__all__ = ["agreement", "distil_head", "distillation_set", "teacher"]


@torch.no_grad()
def distillation_set(
    encoder: ConvEncoder, x: torch.Tensor, n_points: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Latent Gaussians for the teacher to label.

    Parameters
    ----------
    encoder : ConvEncoder
        The trained raw encoder (eval mode).
    x : Tensor of shape (N, n_channels)
        The training spectra.
    n_points : int
        Size of the set.
    generator : torch.Generator

    Returns
    -------
    mu, var : Tensor of shape (n_points, latent_dim)
    n_data : int
        The first ``n_data`` rows are the training spectra's own moments.
    """

    def pick(n: int) -> torch.Tensor:
        return torch.randint(len(x), (n,), generator=generator, device=x.device)

    def rand(*shape: int) -> torch.Tensor:
        return torch.rand(*shape, generator=generator, device=x.device)

    def randn(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=generator, device=x.device)

    encoder.eval()
    sizes = [int(n_points * f) for f in (0.3, 0.2, 0.2, 0.15)]
    sizes.append(n_points - sum(sizes))
    n_data, n_noisy, n_jitter, n_mix, n_far = sizes
    order = torch.randperm(len(x), generator=generator, device=x.device)
    data_idx = order[:n_data] if n_data <= len(x) else pick(n_data)
    loc, scale = encoder(x[data_idx])
    mus, vars_ = [loc], [scale.pow(2)]

    # noisier copies: per-spectrum noise level from first differences, up to 3x again
    noisy = x[pick(n_noisy)]
    sigma = (noisy.diff(dim=-1).std(-1, keepdim=True) / math.sqrt(2.0)).clamp_min(1e-6)
    loc, scale = encoder(noisy + 3.0 * rand(n_noisy, 1) * sigma * randn(*noisy.shape))
    mus.append(loc)
    vars_.append(scale.pow(2))

    base_mu, base_var = torch.cat(mus), torch.cat(vars_)
    d = base_mu.shape[-1]

    def base(n: int) -> torch.Tensor:
        return torch.randint(len(base_mu), (n,), generator=generator, device=x.device)

    i = base(n_jitter)
    mus.append(base_mu[i] + base_var[i].sqrt() * randn(n_jitter, d) * 3.0 * rand(n_jitter, 1))
    vars_.append(base_var[i] * torch.exp(3.0 * rand(n_jitter, d) - 1.5))

    i, j, t = base(n_mix), base(n_mix), rand(n_mix, 1)
    mus.append(t * base_mu[i] + (1 - t) * base_mu[j])
    vars_.append(t * base_var[i] + (1 - t) * base_var[j])

    center, spread = base_mu.mean(0), base_mu.std(0).clamp_min(1e-3)
    direction = F.normalize(randn(n_far, d), dim=-1) * math.sqrt(d)
    mus.append(center + spread * direction * (1.5 + 6.5 * rand(n_far, 1)))
    vars_.append(base_var[base(n_far)] * torch.exp(4.0 * rand(n_far, 1) - 1.0))
    return torch.cat(mus), torch.cat(vars_).clamp_min(1e-8), n_data


@torch.no_grad()
def teacher(
    gp: GPPosterior, mu: torch.Tensor, var: torch.Tensor, kind: str = "fast", seed: int = 0, chunk: int = 1024
) -> Prediction:
    """The GP predictive at latent Gaussians ``N(mu, var)``, in chunks (``kind``: "fast" or "exact")."""
    generator = torch.Generator(mu.device).manual_seed(seed)

    def predict(m: torch.Tensor, v: torch.Tensor) -> Prediction:
        return predict_exact(gp, m, v, 64, 32, generator) if kind == "exact" else predict_fast(gp, m, v)

    return map_chunks(predict, mu, var, chunk=chunk)


def _targets(pred: Prediction) -> dict[str, torch.Tensor]:
    return {
        "log_p": pred.proba.clamp_min(1e-12).log(),
        "proba": pred.proba,
        "aleatoric": pred.aleatoric,
        "epistemic": pred.epistemic,
        "log_var": torch.stack([pred.var_from_encoder, pred.var_from_gp], -1).clamp_min(1e-10).log(),
    }


def _loss(
    head: UncertaintyHead, mu: torch.Tensor, var: torch.Tensor, t: dict[str, torch.Tensor]
) -> torch.Tensor:
    out = head.raw(mu, var)
    c = head.n_classes
    log_q = torch.log_softmax(out[:, :c], -1)
    kl = (t["proba"] * (t["log_p"] - log_q)).sum(-1).mean()
    total = -(log_q.exp() * log_q).sum(-1)
    aleatoric = torch.sigmoid(out[:, c]) * total
    split = (aleatoric - t["aleatoric"]).pow(2).mean() + (total - aleatoric - t["epistemic"]).pow(2).mean()
    return kl + split + 0.01 * (out[:, c + 1 :] - t["log_var"]).pow(2).mean()


def _train(
    head: UncertaintyHead,
    optim: torch.optim.Optimizer,
    schedule: torch.optim.lr_scheduler.LRScheduler,
    epochs: int,
    train_idx: torch.Tensor,
    mu: torch.Tensor,
    var: torch.Tensor,
    targets: dict[str, torch.Tensor],
    generator: torch.Generator,
    batch: int,
) -> None:
    for _ in range(epochs):
        order = train_idx[torch.randperm(len(train_idx), generator=generator, device=train_idx.device)]
        for idx in order.split(batch):
            loss = _loss(head, mu[idx], var[idx], {k: v[idx] for k, v in targets.items()})
            optim.zero_grad()
            loss.backward()
            optim.step()
            schedule.step()


def agreement(
    head: UncertaintyHead, reference: Prediction, mu: torch.Tensor, var: torch.Tensor
) -> dict[str, float]:
    """How closely the head reproduces ``reference`` (the teacher) at ``N(mu, var)``.

    Returns mean and 99th-percentile absolute probability difference, the share of
    equal argmax labels, and the mean absolute difference of the epistemic term (nats).
    """
    with torch.no_grad():
        proba, _, _, epistemic, _, _ = head(mu, var)
    diff = (proba - reference.proba).abs()
    return {
        "mean_abs_dp": float(diff.mean()),
        "p99_abs_dp": float(diff.flatten().quantile(0.99)),
        "label_agreement": float((proba.argmax(-1) == reference.proba.argmax(-1)).float().mean()),
        "mean_abs_d_epistemic": float((epistemic - reference.epistemic).abs().mean()),
    }


def distil_head(
    encoder: ConvEncoder, gp: GPPosterior, x: torch.Tensor, config: HeadConfig, seed: int = 0
) -> tuple[UncertaintyHead, dict[str, Any]]:
    """Fit an :class:`UncertaintyHead` to the GP predictive on a distillation set.

    Parameters
    ----------
    encoder : ConvEncoder
        The trained raw encoder.
    gp : GPPosterior
        The trained GP classifier.
    x : Tensor of shape (N, n_channels)
        The training spectra (preprocessed, on the model's axis).
    config : HeadConfig
        Size of the head and of the set, epochs, learning rate, teacher.
    seed : int

    Returns
    -------
    head : UncertaintyHead
        In eval mode.
    report : dict
        Agreement with the teacher on held-out in-distribution points (see
        :func:`agreement`), plus ``n_points`` and ``teacher``.
    """
    generator = torch.Generator(x.device).manual_seed(seed + 3)
    mu, var, n_data = distillation_set(encoder, x, config.n_points, generator)
    pred = teacher(gp, mu, var, config.teacher, seed)
    targets = _targets(pred)
    n_val = max(1, n_data // 10)
    train_idx = torch.arange(n_val, len(mu), device=mu.device)

    head = UncertaintyHead(mu.shape[-1], gp.alpha.shape[0], config.hidden).to(mu.device)
    features = torch.cat([mu, var.log()], -1)[: n_data + (len(mu) - n_data) // 3]
    head.center.copy_(features.mean(0))
    head.spread.copy_(features.std(0).clamp_min(1e-3))
    optim = torch.optim.Adam(head.parameters(), lr=config.lr)
    batch = 512
    steps = config.epochs * math.ceil(len(train_idx) / batch)
    schedule = torch.optim.lr_scheduler.LambdaLR(optim, lambda k: 0.5 * (1 + math.cos(math.pi * k / steps)))
    head.train()
    with torch_threads(1):  # a few thousand tiny steps: threads only add synchronisation
        _train(head, optim, schedule, config.epochs, train_idx, mu, var, targets, generator, batch)
    head.eval()
    val = slice(0, n_val)
    held_out = Prediction(*(getattr(pred, k)[val] for k in Prediction.__dataclass_fields__))
    report = agreement(head, held_out, mu[val], var[val])
    return head, {**report, "n_points": len(mu), "teacher": config.teacher}
