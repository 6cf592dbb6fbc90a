"""Probabilistic models: the Pyro VAE with its raw encoder, and the GPyTorch classifier."""

from eelsprint.models.gp import LatentGPClassifier
from eelsprint.models.vae import ConvDecoder, ConvEncoder, SpectrumVAE

__all__ = ["ConvDecoder", "ConvEncoder", "LatentGPClassifier", "SpectrumVAE"]
