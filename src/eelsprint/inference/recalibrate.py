"""Post-hoc recalibration: temperature scaling of the latent class functions.

eelsprint's probabilities are ``E[softmax(f)]`` with ``f ~ N(mean, var)`` per
spectrum (the GP's class functions, integrated over the encoder's latent
Gaussian). Temperature scaling divides the class functions by one scalar
``T > 0``: ``f / T ~ N(mean / T, var / T**2)``, which keeps the predicted label
and sharpens (``T < 1``) or softens (``T > 1``) every probability. ``T`` is
chosen on a labelled subset by minimising the negative log-likelihood.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> mean = rng.normal(0, 3, (500, 3))
>>> labels = np.array([rng.choice(3, p=np.exp(m / 3) / np.exp(m / 3).sum()) for m in mean])
>>> scaler = TemperatureScaler().fit(mean, np.zeros_like(mean), labels)
>>> 2.0 < scaler.temperature_ < 4.5
True
"""

from __future__ import annotations

from typing import Any, Protocol

import numpy as np
import torch
from scipy.optimize import minimize_scalar

from eelsprint.exceptions import InputDataError, NotFittedError
from eelsprint.inference.metrics import negative_log_likelihood
from eelsprint.inference.uncertainty import GPPosterior, sigma_point_softmax

__all__ = ["LatentClassifier", "TemperatureScaler", "latent_moments", "scaled_proba"]


class LatentClassifier(Protocol):
    """What :func:`latent_moments` needs of a classifier (a fitted ``FingerprintClassifier``)."""

    @property
    def gp_(self) -> GPPosterior: ...

    def encode(self, X: Any, energy: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]: ...


def latent_moments(
    clf: LatentClassifier, X: Any, energy: np.ndarray | None = None, *, encoder_variance: bool = True
) -> tuple[np.ndarray, np.ndarray]:
    """Mean and variance of the class functions ``f(z)`` per spectrum, integrated over ``z``.

    Parameters
    ----------
    clf : FingerprintClassifier
        A fitted classifier.
    X : Spectra, HyperSpy Signal1D or array-like of shape (..., n_channels)
        Spectra, as for :meth:`FingerprintClassifier.predict_proba`.
    energy : ndarray of shape (n_channels,), optional
        Energy axis (eV) when ``X`` is a plain array that is not on the model's axis.
    encoder_variance : bool
        ``False`` evaluates the GP at the encoder's latent mean only (``var = 0``),
        ignoring how unsure the encoder is.

    Returns
    -------
    mean, var : ndarray of shape (n_spectra, n_classes)
        ``var`` is the total: from the encoder plus from the GP.
    """
    mu, var = clf.encode(X, energy)
    device = clf.gp_.alpha.device
    mu_t = torch.as_tensor(mu.reshape(-1, mu.shape[-1]), dtype=torch.float32, device=device)
    var_t = torch.as_tensor(var.reshape(-1, var.shape[-1]), dtype=torch.float32, device=device)
    if not encoder_variance:
        var_t = torch.zeros_like(var_t)
    with torch.no_grad():
        mean, var_enc, var_gp = clf.gp_.uncertain_moments(mu_t, var_t)  # chunked inside
    return mean.double().cpu().numpy(), (var_enc + var_gp).double().cpu().numpy()


def scaled_proba(mean: np.ndarray, var: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``E[softmax(f / T)]`` for ``f ~ N(mean, diag(var))`` (sigma points), shape (n, n_classes)."""
    m = torch.as_tensor(mean, dtype=torch.float64) / temperature
    v = torch.as_tensor(var, dtype=torch.float64) / temperature**2
    return sigma_point_softmax(m, v)[0].numpy()


class TemperatureScaler:
    """Fit one temperature for the class functions on labelled spectra.

    Parameters
    ----------
    bounds : (float, float)
        Smallest and largest temperature searched.

    Attributes
    ----------
    temperature_ : float
        The fitted temperature (1 = unchanged).
    nll_before_, nll_after_ : float
        Negative log-likelihood (nats) on the fitting set at ``T = 1`` and at the fit.
    """

    def __init__(self, *, bounds: tuple[float, float] = (0.05, 20.0)) -> None:
        self.bounds = bounds

    def fit(self, mean: np.ndarray, var: np.ndarray, labels: np.ndarray) -> TemperatureScaler:
        """Choose ``T`` minimising the NLL of ``labels`` (negative labels are left out).

        Parameters
        ----------
        mean, var : ndarray of shape (n, n_classes)
            From :func:`latent_moments`.
        labels : ndarray of int, shape (n,)
            True class index, or a negative number for spectra in no library class.

        Returns
        -------
        self

        Raises
        ------
        InputDataError
            If the shapes disagree or fewer than 2 spectra carry a library label.
        """
        labels = np.asarray(labels).reshape(-1)
        if mean.shape != var.shape or mean.ndim != 2 or len(labels) != len(mean):
            raise InputDataError(
                f"temperature scaling needs mean and var of shape (n, n_classes) and n labels; got "
                f"{mean.shape}, {var.shape} and {labels.shape}"
            )
        keep = labels >= 0
        if keep.sum() < 2:
            raise InputDataError(f"temperature scaling needs >= 2 labelled spectra, got {int(keep.sum())}")
        m, v, y = mean[keep], var[keep], labels[keep]

        def objective(log_t: float) -> float:
            return negative_log_likelihood(scaled_proba(m, v, float(np.exp(log_t))), y)

        low, high = np.log(self.bounds[0]), np.log(self.bounds[1])
        result = minimize_scalar(objective, bounds=(low, high), method="bounded", options={"xatol": 1e-4})
        self.temperature_ = float(np.exp(result.x))
        self.nll_before_ = objective(0.0)
        self.nll_after_ = float(result.fun)
        return self

    def predict_proba(self, mean: np.ndarray, var: np.ndarray) -> np.ndarray:
        """Recalibrated class probabilities, shape (n, n_classes)."""
        if not hasattr(self, "temperature_"):
            raise NotFittedError("this TemperatureScaler is not fitted yet; call fit() first")
        return scaled_proba(mean, var, self.temperature_)
