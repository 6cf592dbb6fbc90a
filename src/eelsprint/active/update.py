"""New evidence for :meth:`FingerprintClassifier.update <eelsprint.classify.FingerprintClassifier.update>`.

Three kinds of feedback reach the model without retraining its encoders:

* labelled pixels (a person, a reference region): a table of navigation
  coordinates and a ``class`` column, resolved against the result they were
  picked from (its ``latent_mean`` and ``latent_var`` are the evidence);
* re-acquired pixels (a longer dwell): their new spectra are classified again, the
  result's pixels replaced (:func:`replace_pixels`), and the labels the model gives
  them with at least ``min_confidence`` join the evidence, twice: on the new
  spectrum's latent Gaussian and on the one the result holds for the same pixel
  (the spectrum measured before). The second teaches the GP where the scan's
  ordinary, noisier pixels of that class lie, which is what the next frames look
  like; on the realism replay every strategy ended higher with it, and random
  selection's gain from re-acquiring doubled (measured with the GP on clean latents,
  ``evaluation/results/active_loop_no_transfer.md`` against ``active_loop_clean_gp.md``);
* added fingerprints: passed to ``update`` as a library.

A result may only feed the model whose encoder made it (``attrs["encoder_id"]``):
latents of another encoder live on other axes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr

from eelsprint.active.pixels import flat_indices
from eelsprint.active.suggest import nav_layout
from eelsprint.exceptions import InputDataError
from eelsprint.inference.refit import Evidence

if TYPE_CHECKING:
    from eelsprint.classify import FingerprintClassifier

__all__ = [
    "check_result",
    "confident",
    "labelled_evidence",
    "merge_evidence",
    "reacquired_evidence",
    "replace_pixels",
]


def check_result(result: xr.Dataset, clf: FingerprintClassifier, source: str) -> None:
    """Refuse a result that ``clf``'s encoder did not make (one-line :class:`InputDataError`)."""
    nav_layout(result)
    made_by = result.attrs.get("encoder_id")
    if made_by is None:
        raise InputDataError(f"{source}: has no encoder_id (an older result); classify the data again")
    if made_by != clf.encoder_id_:
        raise InputDataError(
            f"{source}: was made by another model (encoder {made_by}, this model's is {clf.encoder_id_}); "
            "classify the data with this model first"
        )


def labelled_evidence(result: xr.Dataset, table: pd.DataFrame, classes: Any, source: str) -> Evidence:
    """Latent Gaussians of the pixels in ``table`` (navigation columns + ``class``) of ``result``.

    Raises
    ------
    InputDataError
        No ``class`` column, a class not in ``classes``, or a pixel outside the scan.
    """
    dims, shape = nav_layout(result)
    if "class" not in table.columns:
        raise InputDataError(f"{source}: no 'class' column (the label of each pixel)")
    names = table["class"].astype(str).to_numpy()
    unknown = sorted(set(names) - {str(c) for c in classes})
    if unknown:
        raise InputDataError(
            f"{source}: class {', '.join(map(repr, unknown))} is not in the library "
            f"({', '.join(map(str, classes))}); add its fingerprint with --library"
        )
    flat = flat_indices(table, dims, shape, source)
    d = result.sizes["latent"]
    mu = result["latent_mean"].values.reshape(-1, d)[flat]
    var = result["latent_var"].values.reshape(-1, d)[flat]
    return Evidence(mu, var, names)


def confident(result: xr.Dataset, min_confidence: float) -> np.ndarray:
    """Flat mask of the pixels whose label has probability >= ``min_confidence`` and whose
    ``ood_score`` is below 3 (explained by the library): the labels ``update`` trusts."""
    sure = result["confidence"].values.reshape(-1) >= min_confidence
    return sure & (result["ood_score"].values.reshape(-1) < 3.0)


def reacquired_evidence(
    clf: FingerprintClassifier,
    spectra: Any,
    min_confidence: float = 0.9,
    *,
    result: xr.Dataset | None = None,
    pixels: np.ndarray | None = None,
) -> tuple[Evidence, xr.Dataset]:
    """The model's confident labels of re-acquired spectra as evidence, and their classification.

    Parameters
    ----------
    clf : FingerprintClassifier
    spectra : Spectra, HyperSpy Signal1D or array-like
        The re-acquired spectra, one per entry of ``pixels``.
    min_confidence : float
        Only spectra whose label has at least this probability, and an ``ood_score`` below 3,
        count (:func:`confident`).
    result, pixels : xarray.Dataset and ndarray of int, optional
        The result the pixels were picked from and their flat indices in it. When given, each
        confident label is also attached to the pixel's latent Gaussian in ``result`` (the
        spectrum measured before), so the evidence holds two entries per confident pixel.

    Raises
    ------
    InputDataError
        ``result`` made by another model, or ``pixels`` not one per spectrum.
    """
    ds = clf.classify(spectra)
    d = ds.sizes["latent"]
    keep = confident(ds, min_confidence)
    labels = np.asarray(clf.classes_)[ds["label"].values.reshape(-1)[keep]]
    mu, var = (ds[v].values.reshape(-1, d)[keep] for v in ("latent_mean", "latent_var"))
    if result is not None and pixels is not None:
        source = str(result.attrs.get("source", "<result>"))
        check_result(result, clf, source)
        pixels = np.asarray(pixels, dtype=np.int64).reshape(-1)
        if len(pixels) != len(keep):
            raise InputDataError(f"{source}: {len(pixels)} pixels for {len(keep)} re-acquired spectra")
        before = pixels[keep]
        mu = np.concatenate([mu, result["latent_mean"].values.reshape(-1, d)[before]])
        var = np.concatenate([var, result["latent_var"].values.reshape(-1, d)[before]])
        labels = np.concatenate([labels, labels])
    return Evidence(mu, var, labels), ds


def merge_evidence(*parts: Evidence | None) -> Evidence | None:
    """One :class:`Evidence` from several (``None`` entries skipped); ``None`` when all are."""
    given = [p for p in parts if p is not None and len(p.labels)]
    if not given:
        return None
    return Evidence(*(np.concatenate([getattr(p, k) for p in given]) for k in ("mu", "var", "labels")))


def replace_pixels(result: xr.Dataset, patch: xr.Dataset, pixels: np.ndarray) -> xr.Dataset:
    """``result`` with flat pixels ``pixels`` taking every per-pixel variable from ``patch``.

    ``patch`` is the classification of the re-acquired spectra, one per entry of ``pixels``
    (any navigation shape, same classes and latent size).
    """
    dims, shape = nav_layout(result)
    n = int(np.prod(shape))
    if patch["label"].size != len(pixels):
        raise InputDataError(
            f"{patch.attrs.get('source', '<patch>')}: {patch['label'].size} spectra for {len(pixels)} pixels"
        )
    out = result.copy(deep=True)
    for name, var in result.data_vars.items():
        if tuple(var.dims[: len(dims)]) != dims or name not in patch:
            continue
        rest = var.shape[len(dims) :]
        values = out[name].values.reshape(n, *rest)
        values[np.asarray(pixels, dtype=np.int64)] = patch[name].values.reshape(len(pixels), *rest)
        out[name].values = values.reshape(var.shape)
    return out
