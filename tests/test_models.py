import pyro
import pytest
import torch

from eelsprint.config import ModelConfig
from eelsprint.inference.train import calibrate_scale, gp_training_set, noisy_latent_training_set
from eelsprint.models.dropout import BitDropout, bit_dropout_mask
from eelsprint.models.vae import ConvDecoder, ConvEncoder, SpectrumVAE, gaussian_kl


@pytest.mark.parametrize("n_channels", [240, 239, 100, 64])
def test_decoder_mirrors_encoder_length(n_channels: int) -> None:
    cfg = ModelConfig()
    loc, scale = ConvEncoder(n_channels, cfg)(torch.randn(3, n_channels))
    assert loc.shape == scale.shape == (3, cfg.latent_dim)
    assert torch.all(scale > 0)
    assert ConvDecoder(n_channels, cfg)(loc).shape == (3, n_channels)


def test_model_and_guide_sites_have_matching_shapes() -> None:
    vae = SpectrumVAE(240, ModelConfig(latent_dim=5))
    x = torch.randn(7, 240)
    guide = pyro.poutine.trace(vae.guide).get_trace(x)
    model = pyro.poutine.trace(pyro.poutine.replay(vae.model, trace=guide)).get_trace(x)
    assert guide.nodes["z"]["value"].shape == (7, 5)
    assert model.nodes["x"]["fn"].event_shape == (240,)
    assert model.nodes["x"]["is_observed"]
    assert model.nodes["z"]["fn"].batch_shape == (7,)


def test_gaussian_kl_matches_torch() -> None:
    q = torch.distributions.Normal(torch.tensor([0.3, -1.0]), torch.tensor([0.5, 2.0]))
    p = torch.distributions.Normal(torch.tensor([0.0, 0.5]), torch.tensor([1.0, 0.7]))
    expected = torch.distributions.kl_divergence(q, p)
    torch.testing.assert_close(gaussian_kl(q.loc, q.scale, p.loc, p.scale), expected)


def test_calibrate_scale_matches_the_held_out_error() -> None:
    """Targets off the encoder's mean by 0.5 x its scale: factor 0.5, then mean z^2 = 1 (2,000 draws)."""
    torch.manual_seed(0)
    raw = ConvEncoder(64, ModelConfig(latent_dim=3)).eval()
    x = torch.randn(2000, 64)
    with torch.no_grad():
        loc, scale = raw(x)
    target = loc + 0.5 * scale * torch.randn_like(loc)
    ratio = calibrate_scale(raw, x, target)
    assert ratio == pytest.approx(0.25, rel=0.1)
    torch.testing.assert_close(raw.scale_factor, torch.full((3,), 0.5), atol=0.03, rtol=0)
    with torch.no_grad():
        loc2, scale2 = raw(x)
    torch.testing.assert_close(loc2, loc)
    assert float(((target - loc2) / scale2).pow(2).mean()) == pytest.approx(1.0, abs=1e-4)


class _Identity(torch.nn.Module):
    """An "encoder" whose latent is the spectrum itself, with unit scale."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, torch.ones_like(x)


def test_noisy_latent_training_set_adds_the_noise_model_then_one_latent_draw() -> None:
    """Through an identity encoder, z - spectrum has variance alpha + beta |spectrum| + 1 (unit scale)."""
    spectra = torch.tensor([[0.0, 1.0, 4.0], [2.0, 0.0, 9.0]])
    labels = torch.tensor([0, 1])
    z, y = noisy_latent_training_set(_Identity(), spectra, labels, (0.5, 0.25), 20_000, seed=3)
    assert z.shape == (40_000, 3)
    torch.testing.assert_close(y, labels.repeat(20_000))
    residual = (z - spectra.repeat(20_000, 1)).reshape(20_000, 2, 3)
    expected = 0.5 + 0.25 * spectra.abs() + 1.0
    # Sampling error of a variance from 20,000 Gaussian draws: sd = var * sqrt(2 / 20,000) = 1 % of it.
    torch.testing.assert_close(residual.var(0), expected, rtol=0.04, atol=0.0)
    torch.testing.assert_close(residual.mean(0), torch.zeros(2, 3), rtol=0.0, atol=0.06)
    again, _ = noisy_latent_training_set(_Identity(), spectra, labels, (0.5, 0.25), 20_000, seed=3)
    torch.testing.assert_close(z, again)  # seeded


def test_gp_training_set_takes_the_encoder_its_kind_names() -> None:
    spectra, labels = torch.tensor([[1.0, 2.0]]), torch.tensor([0])

    class Shifted(_Identity):
        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            return x + 100.0, torch.zeros_like(x) + 1e-6

    clean = gp_training_set("clean", Shifted(), _Identity(), spectra, labels, (1.0, 0.0), 3, 0)[0]
    torch.testing.assert_close(clean, torch.tensor([[101.0, 102.0]] * 3))  # the VAE's, noise-free
    noisy = gp_training_set("noisy", Shifted(), _Identity(), spectra, labels, (1.0, 0.0), 3, 0)[0]
    assert noisy.shape == (3, 2) and float((noisy - spectra).abs().max()) < 10.0  # the raw one's
    assert not torch.equal(noisy, spectra.repeat(3, 1))  # with the noise added
    no_noise = gp_training_set("noisy", Shifted(), _Identity(), spectra, labels, None, 3, 0)[0]
    torch.testing.assert_close(no_noise, clean)  # no noise model (an older model): the clean set


def test_bit_dropout_keeps_four_fifths_scales_by_the_kept_share_and_is_off_in_eval() -> None:
    torch.manual_seed(0)
    keep, kept = bit_dropout_mask(torch.Size([2_000_000]), 0.2)
    assert kept == 1 - 13107 / 65536  # round(0.2 * 2**16) levels of 2**16 dropped
    # binomial sd of the share: sqrt(0.16 / 2e6) = 2.8e-4; 5 sd
    assert abs(keep.float().mean().item() - kept) < 1.5e-3
    x = torch.linspace(1.0, 2.0, 300_000, requires_grad=True)
    dropout = BitDropout(0.2)
    out = dropout(x)
    zeroed = out == 0
    assert abs(zeroed.float().mean().item() - 0.2) < 5e-3
    torch.testing.assert_close(out[~zeroed], x[~zeroed] / kept)  # survivors scaled by 1 / keep share
    out.sum().backward()
    assert x.grad is not None
    torch.testing.assert_close(x.grad, (~zeroed).float() / kept)
    dropout.eval()
    assert torch.equal(dropout(x), x)
    assert torch.equal(BitDropout(0.0)(x), x)


def test_encoder_and_decoder_use_bit_dropout_with_the_configured_rate() -> None:
    cfg = ModelConfig(dropout=0.3)
    for module in (ConvEncoder(240, cfg), ConvDecoder(240, cfg)):
        rates = [m.p for m in module.modules() if isinstance(m, torch.nn.Dropout)]
        assert rates and all(r == 0.3 for r in rates)
        assert all(isinstance(m, BitDropout) for m in module.modules() if isinstance(m, torch.nn.Dropout))
