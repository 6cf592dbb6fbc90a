"""The closed-form GP posterior and both integration modes against references."""

import gpytorch
import pytest
import torch

from eelsprint.config import ModelConfig, TrainConfig
from eelsprint.inference.train import train_gp
from eelsprint.inference.uncertainty import GPPosterior, predict_exact, predict_fast, sigma_point_softmax


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
