"""Variational GP classifier on the latent space (torch and gpytorch only)."""

from __future__ import annotations

import gpytorch
import torch
from gpytorch.variational import (
    CholeskyVariationalDistribution,
    IndependentMultitaskVariationalStrategy,
    VariationalStrategy,
)

__all__ = ["LatentGPClassifier"]


class LatentGPClassifier(gpytorch.models.ApproximateGP):
    """One independent SVGP per class, ARD RBF kernels, learned inducing points.

    Used with ``gpytorch.likelihoods.SoftmaxLikelihood(num_features=n_classes,
    num_classes=n_classes, mixing_weights=False)``.

    Parameters
    ----------
    inducing_points : Tensor of shape (n_classes, n_inducing, latent_dim)
        Initial inducing locations, one set per class.
    """

    def __init__(self, inducing_points: torch.Tensor) -> None:
        n_classes, n_inducing, latent_dim = inducing_points.shape
        batch = torch.Size([n_classes])
        variational = CholeskyVariationalDistribution(n_inducing, batch_shape=batch)
        strategy = IndependentMultitaskVariationalStrategy(
            VariationalStrategy(self, inducing_points, variational, learn_inducing_locations=True),
            num_tasks=n_classes,
        )
        super().__init__(strategy)
        self.mean_module = gpytorch.means.ConstantMean(batch_shape=batch)
        self.covar_module = gpytorch.kernels.ScaleKernel(
            gpytorch.kernels.RBFKernel(ard_num_dims=latent_dim, batch_shape=batch), batch_shape=batch
        )

    def forward(self, x: torch.Tensor) -> gpytorch.distributions.MultivariateNormal:
        return gpytorch.distributions.MultivariateNormal(self.mean_module(x), self.covar_module(x))
