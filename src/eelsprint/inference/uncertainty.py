"""Class probabilities that integrate over the encoder's latent Gaussian and the GP posterior.

For a pixel with latent ``z ~ N(mu, diag(var))`` (from the raw encoder) and
class functions ``f_c ~ GP posterior``, ``p(y | x) = E_z E_f [softmax(f(z))]``.

Two ways to compute it, with the same outputs:

* :func:`predict_exact` - Monte Carlo over z and over per-point marginals of f
  (never the joint over the batch), the reference.
* :func:`predict_fast` - deterministic: the exact first two moments of f under
  the Gaussian input (the closed-form expected RBF kernel, "psi statistics"),
  then a sigma-point (unscented) average of the softmax over those moments.

Both return total predictive entropy, its split into expected entropy
(aleatoric) and mutual information (epistemic), and the split of the latent
function's variance into the part from the encoder (``Var_z E_f``) and the part
from the GP (``E_z Var_f``).
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from eelsprint.inference.chunks import map_chunks
from eelsprint.models.gp import LatentGPClassifier

__all__ = ["GPPosterior", "Prediction", "entropy", "predict_exact", "predict_fast", "sigma_point_softmax"]


@dataclass(frozen=True)
class GPPosterior:
    """The SVGP posterior in closed form, cached from a trained :class:`LatentGPClassifier`.

    With whitened inducing variables ``u = L v``, ``q(v) = N(m, S)`` and
    ``L L^T = K_zz``: ``mean(x) = c + k(x) @ alpha`` and
    ``var(x) = s2 - k(x)^T B k(x)`` where ``alpha = L^-T m`` and
    ``B = L^-T (I - S) L^-1``. Shapes: C classes, M inducing points, D latent dims.
    """

    inducing: torch.Tensor  # (C, M, D)
    lengthscale: torch.Tensor  # (C, D)
    outputscale: torch.Tensor  # (C,)
    constant: torch.Tensor  # (C,)
    alpha: torch.Tensor  # (C, M)
    cross: torch.Tensor  # (C, M, M), the matrix B

    @classmethod
    @torch.no_grad()
    def from_model(cls, model: LatentGPClassifier) -> GPPosterior:
        """Fill the caches from a trained model (float64 for the solves)."""
        base = model.variational_strategy.base_variational_strategy
        z = base.inducing_points.detach().double()
        kernel = model.covar_module
        lengthscale = kernel.base_kernel.lengthscale.detach().double().squeeze(-2)
        outputscale = kernel.outputscale.detach().double()
        k_zz = outputscale[:, None, None] * _rbf(z, z, lengthscale)
        eye = torch.eye(z.shape[-2], dtype=z.dtype, device=z.device)
        chol = torch.linalg.cholesky(k_zz + base.jitter_val * eye)
        q = base.variational_distribution
        m = q.mean.detach().double()
        s = q.covariance_matrix.detach().double()
        alpha = torch.linalg.solve_triangular(chol.mT, m.unsqueeze(-1), upper=True).squeeze(-1)
        l_inv = torch.linalg.solve_triangular(chol, eye.expand_as(chol), upper=False)
        cross = l_inv.mT @ (eye - s) @ l_inv
        constant = model.mean_module.constant.detach().double().reshape(-1)
        return cls(z, lengthscale, outputscale, constant, alpha, cross).to(torch.float32)

    def to(self, target: torch.dtype | torch.device) -> GPPosterior:
        """Copy with every tensor cast to a dtype or moved to a device."""
        return GPPosterior(*(getattr(self, f.name).to(target) for f in fields(self)))

    def tensors(self) -> dict[str, torch.Tensor]:
        """The caches by name (for saving and export)."""
        return {f"gp_cache.{f.name}": getattr(self, f.name) for f in fields(self)}

    def marginals(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-point posterior mean and variance of f at latent points ``x`` (N, D) -> two (N, C)."""
        mean, var = self.class_marginals(x)
        return mean.T, var.T

    def class_marginals(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """As :meth:`marginals`, classes first: two (C, N), the layout the Monte Carlo path uses."""
        k = _rbf(x.unsqueeze(0), self.inducing, self.lengthscale).mul_(self.outputscale[:, None, None])
        m = self.alpha.shape[-1]
        kb = torch.bmm(k, torch.cat([self.cross, self.alpha.unsqueeze(-1)], -1))  # (C, N, M + 1)
        mean = kb[..., m] + self.constant[:, None]
        quad = (kb[..., :m] * k).sum(-1)
        return mean, (self.outputscale[:, None] - quad).clamp_min(1e-8)

    def uncertain_moments(
        self, mu: torch.Tensor, var: torch.Tensor, chunk: int = 1024
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Exact mean and variance split of f(z) for ``z ~ N(mu, diag(var))``, each (N, C).

        Returns ``(mean, var_from_encoder, var_from_gp)`` with
        ``var_from_encoder = Var_z[E_f f]`` and ``var_from_gp = E_z[Var_f f]``.
        Computed ``chunk`` points at a time, which bounds the memory: the pairwise
        inducing-point terms take ``C x chunk x M(M+1)/2`` floats.
        """
        pairs = self._pair_terms()
        return map_chunks(lambda m, v: self._moments(m, v, *pairs), mu, var, chunk=chunk)

    def _pair_terms(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The inducing-point sides of the psi statistics' exponents, and the psi2 weights.

        psi2 is symmetric in the inducing pair (i, j), so only the P = M(M+1)/2 pairs
        with i <= j are kept and the off-diagonal ones weighted twice. Its exponent
        ``log_norm - sep_ij - sum_d w_d (mu_d - mid_ijd)^2`` is expanded in ``mu`` into
        a product of an (N, 2D+2) and a (2D+2, P) matrix, so one ``bmm`` gives all of it.
        """
        z = self.inducing  # (C, M, D)
        i, j = torch.triu_indices(z.shape[-2], z.shape[-2], device=z.device)
        ls2 = self.lengthscale.pow(2).unsqueeze(1)  # (C, 1, D)
        mid = 0.5 * (z[:, i] + z[:, j])  # (C, P, D)
        sep = ((z[:, i] - z[:, j]).pow(2) / (4 * ls2)).sum(-1, keepdim=True)  # (C, P, 1)
        psi2_side = torch.cat([2 * mid, -mid.pow(2), torch.ones_like(sep), -sep], -1).mT  # (C, 2D+2, P)
        twice = torch.where(i == j, 1.0, 2.0).to(z.dtype) * self.outputscale.pow(2)[:, None]  # (C, P)
        weights = torch.stack([self.alpha[:, i] * self.alpha[:, j], self.cross[:, i, j]], -1)
        psi1_side = torch.cat([z, -0.5 * z.pow(2), torch.ones_like(z[..., :1])], -1).mT  # (C, 2D+1, M)
        return psi1_side, psi2_side, weights * twice[..., None]  # weights: (C, P, 2)

    def _moments(
        self,
        mu: torch.Tensor,
        var: torch.Tensor,
        psi1_side: torch.Tensor,
        psi2_side: torch.Tensor,
        weights: torch.Tensor,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """:meth:`uncertain_moments` for one chunk of N points, given :meth:`_pair_terms`."""
        ls2 = self.lengthscale.pow(2).unsqueeze(1)  # (C, 1, D)
        s2 = self.outputscale[:, None]
        v = var.unsqueeze(0)  # (1, N, D)
        u = 1.0 / (ls2 + v)  # (C, N, D)
        log_norm1 = -0.5 * ((u * mu).mul(mu).sum(-1) + torch.log1p(v / ls2).sum(-1))  # (C, N)
        psi1 = torch.bmm(
            torch.cat([u * mu, u, log_norm1.unsqueeze(-1)], -1), psi1_side
        ).exp_()  # (C, N, M) / s2
        mean_c = s2 * (psi1 @ self.alpha.unsqueeze(-1)).squeeze(-1)  # (C, N)
        w = 1.0 / (ls2 + 2 * v)  # (C, N, D)
        log_norm2 = -0.5 * torch.log1p(2 * v / ls2).sum(-1) - (w * mu).mul(mu).sum(-1)  # (C, N)
        left = torch.cat([w * mu, w, log_norm2.unsqueeze(-1), torch.ones_like(log_norm2).unsqueeze(-1)], -1)
        sums = torch.bmm(torch.bmm(left, psi2_side).exp_(), weights)  # (C, N, 2): a^T psi2 a, tr(psi2 B)
        var_enc = (sums[..., 0] - mean_c.pow(2)).clamp_min(0.0)
        var_gp = (s2 - sums[..., 1]).clamp_min(1e-8)
        mean = self.constant[:, None] + mean_c
        return mean.T, var_enc.T, var_gp.T


def _rbf(x: torch.Tensor, z: torch.Tensor, lengthscale: torch.Tensor) -> torch.Tensor:
    """Unit-scale ARD RBF between x (..., N, D) and z (C, M, D) -> (C, N, M)."""
    ls = lengthscale[:, None, :]
    xs, zs = x / ls, z / ls
    norms = xs.pow(2).sum(-1, keepdim=True) + zs.pow(2).sum(-1).unsqueeze(-2)  # (C, N, M)
    d2 = torch.baddbmm(norms, xs.expand(len(zs), -1, -1), zs.mT, alpha=-2.0)
    return d2.clamp_min_(0.0).mul_(-0.5).exp_()


def entropy(p: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Shannon entropy in nats over the class axis ``dim`` (the last by default)."""
    return -(p * p.clamp_min(1e-12).log()).sum(dim)


@dataclass(frozen=True)
class Prediction:
    """Per-spectrum outputs of either integration mode (torch tensors, N leading)."""

    proba: torch.Tensor  # (N, C)
    entropy: torch.Tensor  # (N,) total predictive entropy
    aleatoric: torch.Tensor  # (N,) expected entropy
    epistemic: torch.Tensor  # (N,) mutual information
    var_from_encoder: torch.Tensor  # (N,) mean over classes of Var_z E_f f_c
    var_from_gp: torch.Tensor  # (N,) mean over classes of E_z Var_f f_c


def _summarise(
    proba: torch.Tensor, expected_entropy: torch.Tensor, var_enc: torch.Tensor, var_gp: torch.Tensor
) -> Prediction:
    total = entropy(proba)
    aleatoric = torch.minimum(expected_entropy, total)
    return Prediction(proba, total, aleatoric, total - aleatoric, var_enc.mean(-1), var_gp.mean(-1))


def predict_exact(
    gp: GPPosterior,
    mu: torch.Tensor,
    var: torch.Tensor,
    z_samples: int = 32,
    f_samples: int = 16,
    generator: torch.Generator | None = None,
    offset: torch.Tensor | None = None,
) -> Prediction:
    """Monte Carlo reference: z ~ N(mu, var), then f ~ per-point GP marginals at each z.

    Parameters
    ----------
    gp : GPPosterior
    mu, var : Tensor of shape (N, D)
        The raw encoder's latent mean and variance.
    z_samples, f_samples : int
        Draws of z, and of f per z.
    generator : torch.Generator, optional
        For reproducible draws; on ``mu``'s device.
    offset : Tensor of shape (N, C), optional
        Added to f's mean (the spectral prior of :mod:`eelsprint.inference.spectral`).
    """
    n, d = mu.shape
    eps = torch.randn(z_samples, n, d, generator=generator, dtype=mu.dtype, device=mu.device)
    z = mu + var.sqrt() * eps
    f_mean, f_var = gp.class_marginals(z.reshape(-1, d))  # classes first: softmax over a leading axis
    f_mean, f_var = f_mean.view(-1, 1, z_samples, n), f_var.view(-1, 1, z_samples, n)
    if offset is not None:
        f_mean = f_mean + offset.T[:, None, None, :]
    noise = torch.randn(
        len(f_mean), f_samples, z_samples, n, generator=generator, dtype=mu.dtype, device=mu.device
    )
    p = torch.softmax(noise.mul_(f_var.sqrt()).add_(f_mean), dim=0)  # (C, F, S, N)
    proba = p.mean((1, 2)).T
    expected_entropy = entropy(p, dim=0).mean((0, 1))
    f_mean, f_var = f_mean.squeeze(1), f_var.squeeze(1)
    return _summarise(proba, expected_entropy, f_mean.var(1, correction=0).T, f_var.mean(1).T)


def sigma_point_softmax(mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """E[softmax(f)] and E[H(softmax(f))] for ``f ~ N(mean, diag(var))`` by sigma points.

    Uses the 2C+1 symmetric points ``mean +- sqrt((C + k) var_c) e_c`` with
    ``k = 1`` (all weights positive), exact for polynomials of degree 3 per axis.
    Both averages come from one weighted sum over the points.
    """
    c = mean.shape[-1]
    kappa = 1.0
    eye = torch.eye(c, dtype=mean.dtype, device=mean.device)
    signs = torch.cat([eye.new_zeros(1, c), eye, -eye])  # (2C+1, C)
    log_p = torch.log_softmax(mean.unsqueeze(-2) + signs * ((c + kappa) * var).sqrt().unsqueeze(-2), -1)
    p = log_p.exp()  # (N, 2C+1, C)
    weights = signs.new_full((2 * c + 1,), 0.5 / (c + kappa))
    weights[0] = kappa / (c + kappa)
    averaged = weights @ torch.cat([p, (p * log_p).sum(-1, keepdim=True).neg_()], -1)  # (N, C+1)
    return averaged[..., :c], averaged[..., c]


def predict_fast(
    gp: GPPosterior, mu: torch.Tensor, var: torch.Tensor, offset: torch.Tensor | None = None
) -> Prediction:
    """Deterministic: exact moments of f under the Gaussian input, sigma-point softmax.

    ``offset`` (N, C), when given, is added to f's mean (the spectral prior).
    """
    mean, var_enc, var_gp = gp.uncertain_moments(mu, var)
    if offset is not None:
        mean = mean + offset
    proba, expected_entropy = sigma_point_softmax(mean, var_enc + var_gp)
    return _summarise(proba, expected_entropy, var_enc, var_gp)
