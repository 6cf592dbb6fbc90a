"""Convolutional encoders/decoder and the Pyro VAE of spectra (torch and pyro only).

Architecture after Hollenbach et al. (2024): Conv1d layers with stride 2,
LeakyReLU and dropout, dense heads to a latent mean and scale; the decoder
mirrors it with ConvTranspose1d. The reconstruction term is a Laplace
likelihood (mean absolute error with a learned scale) and the prior N(0, I).
"""

from __future__ import annotations

import pyro
import pyro.distributions as dist
import torch
from pyro import poutine
from pyro.nn import PyroModule
from torch import nn

from eelsprint.config import ModelConfig
from eelsprint.models.dropout import BitDropout

__all__ = ["ConvDecoder", "ConvEncoder", "SpectrumVAE", "gaussian_kl"]


def _conv_lengths(n_channels: int, kernels: tuple[int, ...]) -> list[int]:
    lengths = [n_channels]
    for k in kernels:
        lengths.append((lengths[-1] + 2 * (k // 2) - k) // 2 + 1)
    return lengths


class ConvEncoder(nn.Module):
    """Spectrum -> Gaussian over the latent (loc, scale).

    Parameters
    ----------
    n_channels : int
        Energy channels of the input spectra.
    config : ModelConfig
        Filters, kernels, dropout, slope and latent size.

    Notes
    -----
    Inputs are divided by ``input_scale`` (a buffer set at fit time) so that the
    network sees values of order one whatever the spectra's units. The output
    ``scale`` is multiplied by ``scale_factor`` (per latent dimension, a buffer of
    ones unless calibrated, see :func:`eelsprint.inference.train.calibrate_scale`).
    """

    input_scale: torch.Tensor
    scale_factor: torch.Tensor

    def __init__(self, n_channels: int, config: ModelConfig) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 1
        for out_ch, k in zip(config.filters, config.kernels, strict=True):
            layers += [
                nn.Conv1d(in_ch, out_ch, k, stride=2, padding=k // 2),
                nn.LeakyReLU(config.negative_slope),
                BitDropout(config.dropout),
            ]
            in_ch = out_ch
        self.features = nn.Sequential(*layers, nn.Flatten())
        flat = in_ch * _conv_lengths(n_channels, config.kernels)[-1]
        self.loc = nn.Linear(flat, config.latent_dim)
        self.log_scale = nn.Linear(flat, config.latent_dim)
        self.register_buffer("input_scale", torch.ones(()))
        self.register_buffer("scale_factor", torch.ones(config.latent_dim))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map spectra ``(batch, n_channels)`` to latent ``loc`` and ``scale``, each ``(batch, latent)``."""
        h = self.features((x / self.input_scale).unsqueeze(1))
        return self.loc(h), (nn.functional.softplus(self.log_scale(h)) + 1e-4) * self.scale_factor


class ConvDecoder(nn.Module):
    """Latent ``(batch, latent)`` -> spectrum ``(batch, n_channels)``, mirroring :class:`ConvEncoder`."""

    output_scale: torch.Tensor

    def __init__(self, n_channels: int, config: ModelConfig) -> None:
        super().__init__()
        lengths = _conv_lengths(n_channels, config.kernels)
        self.start = (config.filters[-1], lengths[-1])
        self.slope = config.negative_slope
        self.dense = nn.Linear(config.latent_dim, config.filters[-1] * lengths[-1])
        layers: list[nn.Module] = []
        channels = [*config.filters[::-1], 1]
        for i, k in enumerate(config.kernels[::-1]):
            length_in, length_out = lengths[-1 - i], lengths[-2 - i]
            pad = length_out - (2 * (length_in - 1) - 2 * (k // 2) + k)
            layers.append(nn.ConvTranspose1d(channels[i], channels[i + 1], k, 2, k // 2, output_padding=pad))
            if i < len(config.kernels) - 1:
                layers += [nn.LeakyReLU(config.negative_slope), BitDropout(config.dropout)]
        self.layers = nn.Sequential(*layers)
        self.register_buffer("output_scale", torch.ones(()))

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = nn.functional.leaky_relu(self.dense(z), self.slope).view(-1, *self.start)
        return self.layers(h).squeeze(1) * self.output_scale


class SpectrumVAE(PyroModule):
    """Variational autoencoder of (denoised) spectra, as a Pyro model/guide pair.

    Parameters
    ----------
    n_channels : int
        Energy channels.
    config : ModelConfig
        Architecture.

    Examples
    --------
    >>> vae = SpectrumVAE(240, ModelConfig())
    >>> trace = pyro.poutine.trace(vae.model).get_trace(torch.zeros(5, 240))
    >>> trace.nodes["z"]["value"].shape
    torch.Size([5, 8])
    """

    def __init__(self, n_channels: int, config: ModelConfig) -> None:
        super().__init__()
        self.latent_dim = config.latent_dim
        self.encoder = ConvEncoder(n_channels, config)
        self.decoder = ConvDecoder(n_channels, config)
        self.log_noise = nn.Parameter(torch.tensor(-3.0))
        self.last_posterior: tuple[torch.Tensor, torch.Tensor] | None = None

    def model(self, x: torch.Tensor, beta: float = 1.0) -> None:
        """p(z) p(x | z): N(0, I) prior, Laplace reconstruction with a learned scale."""
        pyro.module("decoder", self.decoder)
        with pyro.plate("spectra", x.shape[0]):
            loc = x.new_zeros(x.shape[0], self.latent_dim)
            with poutine.scale(scale=beta):
                z = pyro.sample("z", dist.Normal(loc, torch.ones_like(loc)).to_event(1))
            recon = self.decoder(z)
            noise = self.log_noise.exp() * self.decoder.output_scale
            pyro.sample("x", dist.Laplace(recon, noise).to_event(1), obs=x)

    def guide(self, x: torch.Tensor, beta: float = 1.0) -> None:
        """q(z | x) = N(encoder(x)); the batch's (loc, scale) is kept in ``last_posterior``.

        Keeping it lets the training loop add a free-bits term without a second
        encoder pass.
        """
        pyro.module("encoder", self.encoder)
        with pyro.plate("spectra", x.shape[0]):
            loc, scale = self.encoder(x)
            self.last_posterior = (loc, scale)
            with poutine.scale(scale=beta):
                pyro.sample("z", dist.Normal(loc, scale).to_event(1))


def gaussian_kl(
    loc_q: torch.Tensor, scale_q: torch.Tensor, loc_p: torch.Tensor, scale_p: torch.Tensor
) -> torch.Tensor:
    """KL(N(loc_q, scale_q^2) || N(loc_p, scale_p^2)) per dimension, elementwise."""
    ratio = (scale_q / scale_p) ** 2
    return 0.5 * (ratio + ((loc_q - loc_p) / scale_p) ** 2 - 1.0 - ratio.log())
