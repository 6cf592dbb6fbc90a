"""Acquisition functions: how much re-acquiring or labelling each pixel of a result is worth.

Every function maps a classification result (the :class:`xarray.Dataset` that
:meth:`~eelsprint.classify.FingerprintClassifier.classify` returns, or the NetCDF that
``eelsprint classify`` writes) to one score per pixel, higher meaning "look here first":

* ``"entropy"``: the total predictive entropy ``H[E p]`` (nats);
* ``"bald"``: the mutual information between the label and the model's unknowns,
  ``H[E p] - E[H p]`` (Houlsby et al. 2011), which is the result's ``epistemic``
  variable (classify integrates over the encoder's latent Gaussian and the GP
  posterior). :func:`bald` computes it from posterior draws when those are at hand;
* ``"margin"``: one minus the gap between the two most probable classes;
* ``"ood"``: the out-of-library score (pixels no library class explains);
* ``"random"``: uniform scores from a seeded generator, the baseline every
  strategy must beat.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import xarray as xr

from eelsprint.exceptions import InputDataError

__all__ = ["STRATEGIES", "acquisition_scores", "bald", "entropy", "margin"]


def entropy(proba: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) over the last axis of probabilities."""
    p = np.clip(np.asarray(proba, dtype=float), 1e-12, 1.0)
    return -(p * np.log(p)).sum(-1)


def bald(draws: np.ndarray) -> np.ndarray:
    """BALD ``H[mean_s p_s] - mean_s H[p_s]`` from posterior draws of shape (S, ..., n_classes)."""
    draws = np.asarray(draws, dtype=float)
    return entropy(draws.mean(0)) - entropy(draws).mean(0)


def margin(proba: np.ndarray) -> np.ndarray:
    """``1 - (p_(1) - p_(2))``: 1 where the two best classes tie, 0 where one is certain."""
    top = np.sort(np.asarray(proba, dtype=float), axis=-1)
    return 1.0 - (top[..., -1] - top[..., -2])


def _variable(name: str) -> Callable[[xr.Dataset, np.random.Generator], np.ndarray]:
    def score(ds: xr.Dataset, rng: np.random.Generator) -> np.ndarray:
        return np.asarray(ds[name].values, dtype=float)

    return score


#: Strategy name -> score of every pixel (navigation shape of the result).
SCORES: dict[str, Callable[[xr.Dataset, np.random.Generator], np.ndarray]] = {
    "entropy": lambda ds, rng: entropy(ds["proba"].values),
    "bald": _variable("epistemic"),
    "margin": lambda ds, rng: margin(ds["proba"].values),
    "ood": _variable("ood_score"),
    "random": lambda ds, rng: rng.random(ds["label"].shape),
}
#: The result variable each strategy reads.
NEEDS = {"entropy": "proba", "margin": "proba", "bald": "epistemic", "ood": "ood_score", "random": "label"}
#: The acquisition strategies, in the order the docs list them.
STRATEGIES = tuple(SCORES)


def acquisition_scores(result: xr.Dataset, strategy: str, seed: int = 0) -> np.ndarray:
    """Score of every pixel of ``result`` under ``strategy`` (higher: acquire first).

    Parameters
    ----------
    result : xarray.Dataset
        A classification result (``proba`` with a ``class`` dimension, ``label``, ``epistemic``,
        ``ood_score``).
    strategy : {"entropy", "bald", "margin", "ood", "random"}
    seed : int
        Seeds ``"random"``.

    Returns
    -------
    ndarray of float, the result's navigation shape

    Raises
    ------
    InputDataError
        Unknown strategy, or a result without the variables the strategy needs.
    """
    if strategy not in SCORES:
        raise InputDataError(f"unknown strategy {strategy!r}; choose one of {', '.join(STRATEGIES)}")
    need = NEEDS.get(strategy, "label")
    if need not in result:
        source = result.attrs.get("source", "<result>")
        raise InputDataError(f"{source}: no {need!r} variable in the result; strategy {strategy!r} needs it")
    scores = SCORES[strategy](result, np.random.default_rng(seed))
    return np.nan_to_num(scores, nan=-np.inf)
