"""eelsprint: calibrated, uncertainty-aware fingerprinting of noisy in-situ STEM-EELS spectra.

Method after Hollenbach et al., Sci. Rep. 14:17881 (2024): a Pyro VAE on
denoised spectra, a probabilistic raw encoder into the same latent space, and a
GPyTorch variational GP classifier trained on the fingerprint library's latent
Gaussians; class probabilities integrate over the encoder's latent variance and
the GP posterior.
"""

from __future__ import annotations

__version__ = "0.1.0"

from eelsprint.classify import FingerprintClassifier
from eelsprint.config import Config
from eelsprint.data.io import read_library, read_spectra
from eelsprint.data.store import default_model_path
from eelsprint.exceptions import EelsprintError, InputDataError, ModelFileError

__all__ = [
    "Config",
    "EelsprintError",
    "FingerprintClassifier",
    "InputDataError",
    "ModelFileError",
    "__version__",
    "default_model_path",
    "read_library",
    "read_spectra",
]
