"""Dropout whose CPU mask costs a quarter of one random number per element.

``torch.nn.Dropout`` on the CPU draws one Bernoulli variate per element; for the
encoders' and decoder's small activations that draw, not the convolutions, was
most of a training step (about 40 of 90 ms per VAE step of 256 spectra on two
cores). :class:`BitDropout` draws 64 random bits and reads them as four 16-bit
integers, each compared with a threshold: a drop probability of
``round(p * 65536) / 65536`` (0.2 -> 0.1999969). On other devices, and in
evaluation mode, it is ``torch.nn.functional.dropout``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["BitDropout", "bit_dropout_mask"]

_LEVELS = 1 << 16
_INT64_MIN = -(1 << 63)


def bit_dropout_mask(shape: torch.Size, p: float) -> tuple[torch.Tensor, float]:
    """A boolean keep-mask of ``shape`` from the global CPU generator and its keep probability.

    Each element is kept when its 16 random bits, read as a signed integer, reach
    ``-32768 + round(p * 65536)``.
    """
    n = shape.numel()
    bits = torch.empty((n + 3) // 4, dtype=torch.int64).random_(_INT64_MIN, None)  # all 64 bits
    dropped = round(p * _LEVELS)
    keep = bits.view(torch.int16)[:n] >= dropped - _LEVELS // 2
    return keep.view(shape), 1.0 - dropped / _LEVELS


class BitDropout(nn.Dropout):
    """``nn.Dropout`` with the CPU mask of :func:`bit_dropout_mask` (same parameters, no state)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0 or x.device.type != "cpu":
            return super().forward(x)
        keep, kept = bit_dropout_mask(x.shape, self.p)
        return x * keep.to(x.dtype) / kept
