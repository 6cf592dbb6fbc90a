"""The distilled uncertainty head and the real-time graph built around it (torch only).

``spectra (B, n_channels) -> raw encoder -> latent mean and variance -> dense head ->
proba, entropy, aleatoric, epistemic`` (plus the latent moments and the variance
split), with no Python control flow, no sampling and no GP solve in it, so the same
module runs eagerly, under ``torch.export``/AOTInductor, ONNX Runtime, TorchScript and
TensorRT (:mod:`eelsprint.realtime.export`).

The head (:class:`UncertaintyHead`) is distilled from the GP's predictive
(:mod:`eelsprint.inference.distil`) at the end of :meth:`FingerprintClassifier.fit`; it is
the paper's low-latency variant with the uncertainty terms kept.
"""

from __future__ import annotations

import copy
import warnings

import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import skip_init

from eelsprint.config import Precision, check_precision
from eelsprint.models.vae import ConvEncoder

__all__ = [
    "DTYPES",
    "OUTPUTS",
    "CastModel",
    "Precision",
    "RealtimeModel",
    "UncertaintyHead",
    "with_precision",
]

#: Names of :class:`RealtimeModel`'s outputs, in order.
OUTPUTS = (
    "proba",
    "entropy",
    "aleatoric",
    "epistemic",
    "latent_mean",
    "latent_var",
    "var_from_encoder",
    "var_from_gp",
)
#: The torch dtype of each :data:`~eelsprint.config.Precision` (int8: the quantised dense weights').
DTYPES: dict[Precision, torch.dtype] = {
    "fp32": torch.float32,
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "int8": torch.qint8,
}


class UncertaintyHead(nn.Module):
    """Latent Gaussian ``N(mu, diag(var))`` -> class probabilities and uncertainty terms.

    A two-hidden-layer SiLU network on the standardised ``(mu, log var)``, soft-clipped
    to ``+-clip`` standard deviations (``clip * tanh(u / clip)``): far from the data the
    features saturate in a region the distillation set covers, so the head's answer
    there is the GP's (high epistemic), not a linear extrapolation. It predicts class
    logits, the aleatoric share of the total entropy, and the log of the encoder's and
    the GP's parts of the latent-function variance; entropy and its split follow
    exactly (``aleatoric + epistemic = entropy``, both >= 0).

    Parameters
    ----------
    latent_dim : int
        Dimensions of the latent space.
    n_classes : int
        Library classes.
    hidden : int
        Width of the hidden layers.
    clip : float
        Soft clipping of the standardised features.
    """

    center: torch.Tensor
    spread: torch.Tensor

    def __init__(self, latent_dim: int, n_classes: int, hidden: int = 64, clip: float = 4.0) -> None:
        super().__init__()
        self.n_classes = n_classes
        self.clip = float(clip)
        self.register_buffer("center", torch.zeros(2 * latent_dim))
        self.register_buffer("spread", torch.ones(2 * latent_dim))
        self.net = nn.Sequential(
            nn.Linear(2 * latent_dim, hidden),
            nn.SiLU(),
            nn.Linear(hidden, hidden),
            nn.SiLU(),
            nn.Linear(hidden, n_classes + 3),
        )

    def raw(self, mu: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """Unconstrained outputs ``(B, n_classes + 3)``: logits, aleatoric-share logit, two log variances."""
        u = (torch.cat([mu, var.log()], dim=-1) - self.center) / self.spread
        return self.net(self.clip * torch.tanh(u / self.clip))

    def forward(self, mu: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """(proba, entropy, aleatoric, epistemic, var_from_encoder, var_from_gp) from ``(B, D)`` moments."""
        out = self.raw(mu, var)
        c = self.n_classes
        log_p = torch.log_softmax(out[:, :c], dim=-1)
        proba = log_p.exp()
        total = -(proba * log_p).sum(-1)
        aleatoric = torch.sigmoid(out[:, c]) * total
        return proba, total, aleatoric, total - aleatoric, out[:, c + 1].exp(), out[:, c + 2].exp()


class RealtimeModel(nn.Module):
    """The plain wrapper exported by :mod:`eelsprint.realtime.export`: spectra -> :data:`OUTPUTS`.

    A copy of the raw encoder followed by the head, rearranged for speed without changing
    the arithmetic: the input scale is folded into the first convolution, the two dense
    layers (mean, scale) are fused into one, and each ``Conv1d`` becomes a ``Conv2d`` with
    a ``1 x k`` kernel on channels-last ``(B, 1, 1, L)`` tensors (oneDNN's fastest layout on
    the CPU: ~1.3-1.4x the ``Conv1d`` throughput on a 2-core Zen 4). Dropout is gone
    (inference only). Equal to ``head(*encoder(x))`` up to float rounding.

    Parameters
    ----------
    encoder : ConvEncoder
        The trained raw encoder (not modified).
    head : UncertaintyHead
        The distilled head (copied).
    """

    scale_factor: torch.Tensor

    def __init__(self, encoder: ConvEncoder, head: UncertaintyHead) -> None:
        super().__init__()
        convs = []
        for conv in (m for m in encoder.features if isinstance(m, nn.Conv1d)):
            (k,), (stride,), padding = conv.kernel_size, conv.stride, conv.padding
            pad = int(padding[0]) if isinstance(padding, tuple) else 0
            shape = (conv.in_channels, conv.out_channels, (1, k), (1, stride), (0, pad))
            # on the encoder's device, uninitialised (no global RNG draw): every weight is copied below
            flat = skip_init(nn.Conv2d, *shape, device=conv.weight.device)
            with torch.no_grad():
                flat.weight.copy_(conv.weight.unsqueeze(2))
                if conv.bias is not None and flat.bias is not None:
                    flat.bias.copy_(conv.bias)
            convs.append(flat)
        slopes = [m.negative_slope for m in encoder.features if isinstance(m, nn.LeakyReLU)]
        with torch.no_grad():
            convs[0].weight.div_(encoder.input_scale)
        self.convs = nn.ModuleList(convs)
        self.slope = float(slopes[0]) if slopes else 0.01
        self.latent_dim = encoder.loc.out_features
        in_features, device = encoder.loc.in_features, encoder.loc.weight.device
        self.latent = skip_init(nn.Linear, in_features, 2 * self.latent_dim, device=device)
        with torch.no_grad():
            self.latent.weight.copy_(torch.cat([encoder.loc.weight, encoder.log_scale.weight]))
            self.latent.bias.copy_(torch.cat([encoder.loc.bias, encoder.log_scale.bias]))
        self.register_buffer("scale_factor", encoder.scale_factor.clone())
        self.head = copy.deepcopy(head)
        self.channels_last()
        self.eval()

    def channels_last(self) -> RealtimeModel:
        """Put the convolution weights in channels-last order (again after a dtype change)."""
        for conv in self.convs:
            assert isinstance(conv, nn.Conv2d)
            conv.weight.data = conv.weight.data.contiguous(memory_format=torch.channels_last)
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Spectra ``(B, n_channels)`` float32 -> eight tensors, see :data:`OUTPUTS`."""
        h = x.reshape(x.shape[0], 1, 1, x.shape[1]).contiguous(memory_format=torch.channels_last)
        for conv in self.convs:
            h = F.leaky_relu(conv(h), self.slope, inplace=True)
        out = self.latent(h.contiguous().flatten(1))
        loc = out[:, : self.latent_dim]
        scale = (F.softplus(out[:, self.latent_dim :]) + 1e-4) * self.scale_factor
        var = scale * scale
        proba, total, aleatoric, epistemic, var_enc, var_gp = self.head(loc, var)
        return proba, total, aleatoric, epistemic, loc, var, var_enc, var_gp

    def flops_per_spectrum(self, n_channels: int) -> int:
        """Multiply-adds x 2 of the convolutions and dense layers for one spectrum."""
        flops, length = 0, n_channels
        for conv in (m for m in self.convs if isinstance(m, nn.Conv2d)):
            k, s, p = conv.kernel_size[1], conv.stride[1], conv.padding
            pad = int(p[1]) if isinstance(p, tuple) else 0
            length = (length + 2 * pad - k) // s + 1
            flops += 2 * conv.in_channels * conv.out_channels * k * length
        linears = [self.latent, *(m for m in self.head.net if isinstance(m, nn.Linear))]
        return flops + sum(2 * m.in_features * m.out_features for m in linears)


class CastModel(nn.Module):
    """Run ``model`` in ``dtype`` (bf16 on the CPU, FP16 for TensorRT); float32 in and out."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model.to(dtype)
        if isinstance(self.model, RealtimeModel):
            self.model.channels_last()
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        return tuple(t.float() for t in self.model(x.to(self.dtype)))


def with_precision(model: RealtimeModel, precision: Precision) -> nn.Module:
    """A copy of ``model`` in an eager ``precision`` (fp32, bf16, int8); ``"fp32"`` returns it unchanged.

    Raises
    ------
    ConfigError
        For a precision the eager graph does not run (fp16: TensorRT only).
    """
    precision = check_precision(precision, "eager")
    if precision == "fp32":
        return model
    if precision == "bf16":
        return CastModel(copy.deepcopy(model), DTYPES["bf16"]).eval()  # CastModel keeps channels-last
    # torch.ao.quantization is deprecated upstream in favour of torchao (not a dependency); it
    # still works and int8 is only offered as a measured option, so its notice is silenced here.
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message="torch.ao.quantization is deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings("ignore", message="torch.quantize_per_tensor", category=UserWarning)
        from torch.ao.quantization import quantize_dynamic

        return quantize_dynamic(copy.deepcopy(model), {nn.Linear}, dtype=DTYPES["int8"]).eval()
