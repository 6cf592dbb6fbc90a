"""The closed-form GP posterior and both integration modes against references."""

from pathlib import Path

import gpytorch
import pytest
import torch

from eelsprint.config import ModelConfig, TrainConfig
from eelsprint.data.store import load_model_dir
from eelsprint.inference.train import train_gp
from eelsprint.inference.uncertainty import (
    GPPosterior,
    entropy,
    predict_exact,
    predict_fast,
    sigma_point_softmax,
)

SHIPPED = Path(__file__).resolve().parents[1] / "models" / "default"


@pytest.fixture(scope="module")
def trained() -> tuple[gpytorch.models.ApproximateGP, GPPosterior]:
    g = torch.Generator().manual_seed(0)
    centres = torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 1.0]])
    y = torch.arange(3).repeat_interleave(60)
    z = centres[y] + 0.5 * torch.randn(180, 3, generator=g)
    # lr 0.02: a smooth GP (output scale ~1.2); the simulator-level agreement is in test_classify.py
    train = TrainConfig(gp_iterations=150, gp_lr=0.02)
    gp, _ = train_gp(z, y, 3, ModelConfig(n_inducing=16), train, progress=False)
    return gp, GPPosterior.from_model(gp)


def test_cached_posterior_matches_gpytorch(trained: tuple) -> None:
    gp, post = trained
    x = torch.randn(50, 3) * 2
    with torch.no_grad():
        f = gp(x)
        mean, var = post.marginals(x)
    torch.testing.assert_close(mean, f.mean, atol=2e-4, rtol=1e-3)
    torch.testing.assert_close(var, f.variance, atol=2e-4, rtol=1e-3)


def test_classes_are_learned(trained: tuple) -> None:
    _, post = trained
    mean, _ = post.marginals(torch.tensor([[0.0, 0.0, 0.0], [2.0, 0.0, 0.0], [0.0, 2.0, 1.0]]))
    assert mean.argmax(-1).tolist() == [0, 1, 2]


def test_uncertain_moments_reduce_to_marginals_without_input_variance(trained: tuple) -> None:
    _, post = trained
    x = torch.randn(20, 3)
    mean, var_enc, var_gp = post.uncertain_moments(x, torch.full_like(x, 1e-8))
    ref_mean, ref_var = post.marginals(x)
    torch.testing.assert_close(mean, ref_mean, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(var_gp, ref_var, atol=1e-4, rtol=1e-3)
    assert float(var_enc.max()) < 1e-4


def test_uncertain_moments_match_monte_carlo(trained: tuple) -> None:
    """Closed-form moments vs 20,000 latent draws: agreement within 3 MC standard errors (~2 %)."""
    _, post = trained
    mu = torch.tensor([[0.5, 0.3, 0.0], [1.5, 1.0, 0.5]], dtype=torch.float64)
    var = torch.tensor([[0.3, 0.2, 0.1], [0.05, 0.6, 0.2]], dtype=torch.float64)
    post64 = post.to(torch.float64)
    mean, var_enc, var_gp = post64.uncertain_moments(mu, var)
    g = torch.Generator().manual_seed(1)
    z = mu + var.sqrt() * torch.randn(20000, *mu.shape, generator=g, dtype=torch.float64)
    m, v = post64.marginals(z.reshape(-1, 3))
    m, v = m.view(20000, 2, -1), v.view(20000, 2, -1)
    torch.testing.assert_close(mean, m.mean(0), atol=0.02, rtol=0.0)
    torch.testing.assert_close(var_gp, v.mean(0), atol=0.01, rtol=0.02)
    torch.testing.assert_close(var_enc, m.var(0), atol=0.01, rtol=0.05)


def test_sigma_points_are_exact_without_variance() -> None:
    mean = torch.tensor([[1.0, -0.5, 0.2]])
    proba, expected_entropy = sigma_point_softmax(mean, torch.zeros_like(mean))
    torch.testing.assert_close(proba, torch.softmax(mean, -1))
    p = torch.softmax(mean, -1)
    torch.testing.assert_close(expected_entropy, -(p * p.log()).sum(-1))


def test_fast_agrees_with_monte_carlo_and_outputs_are_consistent(trained: tuple) -> None:
    """Tolerances: mean |dp| < 0.01 and max |dp| < 0.08 vs a 256 x 64-sample MC reference; entropy terms
    mean |d| < 0.04 nats."""
    _, post = trained
    g = torch.Generator().manual_seed(2)
    mu = torch.randn(300, 3, generator=g) * 1.5
    var = torch.rand(300, 3, generator=g) * 0.5
    fast = predict_fast(post, mu, var)
    exact = predict_exact(post, mu, var, z_samples=256, f_samples=64, generator=g)
    diff = (fast.proba - exact.proba).abs()
    assert float(diff.mean()) < 0.01 and float(diff.max()) < 0.08
    for name in ("entropy", "aleatoric", "epistemic"):
        assert float((getattr(fast, name) - getattr(exact, name)).abs().mean()) < 0.04, name
    for pred in (fast, exact):
        torch.testing.assert_close(pred.proba.sum(-1), torch.ones(300))
        assert float(pred.epistemic.min()) >= 0.0
        torch.testing.assert_close(pred.aleatoric + pred.epistemic, pred.entropy)


def test_far_points_are_epistemically_uncertain(trained: tuple) -> None:
    _, post = trained
    near = predict_fast(post, torch.tensor([[0.0, 0.0, 0.0]]), torch.full((1, 3), 0.01))
    far = predict_fast(post, torch.tensor([[8.0, -8.0, 8.0]]), torch.full((1, 3), 0.01))
    assert float(far.epistemic) > 3 * float(near.epistemic)
    assert float(far.var_from_gp) > float(near.var_from_gp)


def direct_moments(gp: GPPosterior, mu: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, ...]:
    """The psi statistics written out over every inducing pair, (C, N, M, M) (eelsprint 0.1's code)."""
    ls2 = gp.lengthscale.pow(2)[:, None, :]
    s2 = gp.outputscale[:, None]
    v = var.unsqueeze(0)
    diff = mu.unsqueeze(1).unsqueeze(0) - gp.inducing.unsqueeze(1)
    psi1 = s2[..., None] * torch.exp(
        -0.5 * (diff.pow(2) / (ls2 + v).unsqueeze(2)).sum(-1)
        - 0.5 * torch.log1p(v / ls2).sum(-1, keepdim=True)
    )
    z = gp.inducing
    mid = 0.5 * (z.unsqueeze(2) + z.unsqueeze(1))
    sep = ((z.unsqueeze(2) - z.unsqueeze(1)).pow(2) / (4 * ls2.unsqueeze(1))).sum(-1)
    w = 1.0 / (ls2 + 2 * v)
    quad = (
        (w * mu.pow(2)).sum(-1)[..., None, None]
        - 2 * torch.einsum("cnd,cijd->cnij", w * mu, mid)
        + torch.einsum("cnd,cijd->cnij", w, mid.pow(2))
    )
    log_norm = -0.5 * torch.log1p(2 * v / ls2).sum(-1)
    psi2 = s2[..., None, None] ** 2 * torch.exp(log_norm[..., None, None] - sep.unsqueeze(1) - quad)
    mean_c = (psi1 @ gp.alpha.unsqueeze(-1)).squeeze(-1)
    second = torch.einsum("cm,cnmk,ck->cn", gp.alpha, psi2, gp.alpha)
    var_enc = (second - mean_c.pow(2)).clamp_min(0.0)
    var_gp = (s2 - torch.einsum("cnmk,ckm->cn", psi2, gp.cross)).clamp_min(1e-8)
    return (gp.constant[:, None] + mean_c).T, var_enc.T, var_gp.T


def direct_sigma_points(mean: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The 2C+1 sigma points built one by one, then softmax and entropy (eelsprint 0.1's code)."""
    c = mean.shape[-1]
    offsets = torch.eye(c) * ((c + 1.0) * var).sqrt().unsqueeze(-2)
    points = torch.cat([mean.unsqueeze(-2), mean.unsqueeze(-2) + offsets, mean.unsqueeze(-2) - offsets], -2)
    weights = torch.full((2 * c + 1,), 0.5 / (c + 1.0))
    weights[0] = 1.0 / (c + 1.0)
    p = torch.softmax(points, dim=-1)
    return (weights[:, None] * p).sum(-2), (weights * entropy(p)).sum(-1)


def shipped_posterior() -> GPPosterior:
    if not (SHIPPED / "manifest.json").is_file():
        pytest.skip(f"{SHIPPED} is absent")
    tensors, _ = load_model_dir(SHIPPED)
    return GPPosterior(**{k[9:]: v for k, v in tensors.items() if k.startswith("gp_cache.")})


@pytest.mark.parametrize("model", ["trained", "shipped"])
def test_pairwise_closed_form_matches_the_direct_formula(trained: tuple, model: str) -> None:
    """Upper-triangle psi2 and fused sigma points against the direct (C, N, M, M) code, both float32.

    Measured max |d| (trained C=3, M=16, D=3 / shipped C=4, M=48, D=8): mean 1.5e-6 / 3.8e-6,
    var_from_gp 3.6e-6 / 2.2e-5, var_from_encoder 1.0e-5 / 9.2e-5 (a difference of two numbers
    up to ~40), proba 5.4e-7 / 9.5e-7; the sigma points alone 1.8e-7 / 1.2e-7.
    """
    post = trained[1] if model == "trained" else shipped_posterior()
    g = torch.Generator().manual_seed(3)
    d = post.inducing.shape[-1]
    mu = torch.randn(2000, d, generator=g) * 1.5  # the shipped model's encoder means lie in [-3, 3]
    var = torch.rand(2000, d, generator=g) * 0.3 + 1e-3  # and its variances in [6e-4, 0.29]
    mean, var_enc, var_gp = post.uncertain_moments(mu, var, chunk=512)
    ref = direct_moments(post, mu, var)
    torch.testing.assert_close(mean, ref[0], atol=2e-5, rtol=0.0)
    torch.testing.assert_close(var_gp, ref[2], atol=1e-4, rtol=0.0)
    torch.testing.assert_close(var_enc, ref[1], atol=5e-4, rtol=0.0)
    ref_proba, ref_entropy = direct_sigma_points(ref[0], ref[1] + ref[2])
    torch.testing.assert_close(predict_fast(post, mu, var).proba, ref_proba, atol=1e-5, rtol=0.0)
    proba, expected_entropy = sigma_point_softmax(ref[0], ref[1] + ref[2])
    torch.testing.assert_close(proba, ref_proba, atol=1e-6, rtol=0.0)
    torch.testing.assert_close(expected_entropy, ref_entropy, atol=1e-6, rtol=0.0)
