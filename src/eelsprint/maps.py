"""Results as xarray Datasets, HyperSpy signals and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from eelsprint.uncertainty import Prediction

_NAV_NAMES = {1: ("pixel",), 2: ("y", "x"), 3: ("frame", "y", "x")}


def nav_dims(ndim: int) -> tuple[str, ...]:
    """Dimension names of a navigation shape: pixel; y, x; frame, y, x; else dim_0, dim_1, ..."""
    return _NAV_NAMES.get(ndim, tuple(f"dim_{i}" for i in range(ndim)))


def to_dataset(
    pred: Prediction,
    latent_mean: np.ndarray,
    latent_var: np.ndarray,
    nav_shape: tuple[int, ...],
    classes: np.ndarray,
    source: str = "<array>",
    mode: str = "fast",
) -> xr.Dataset:
    """Per-spectrum results on the input's navigation shape.

    Variables: ``proba`` (nav..., class), ``label`` (index into ``class``),
    ``entropy``, ``aleatoric``, ``epistemic`` (nats), ``var_from_encoder`` and
    ``var_from_gp`` (latent-function variance split), ``encoder_share``,
    ``latent_mean`` and ``latent_var`` (nav..., latent).
    """
    dims = nav_dims(len(nav_shape))

    def nav(a: Any) -> np.ndarray:
        return np.asarray(a).reshape(nav_shape)

    proba = pred.proba.numpy().reshape(*nav_shape, -1)
    enc, gp = nav(pred.var_from_encoder), nav(pred.var_from_gp)
    data = {
        "proba": ((*dims, "class"), proba, {"long_name": "class probability"}),
        "label": (dims, proba.argmax(-1).astype(np.int32), {"long_name": "most probable class (index)"}),
        "confidence": (dims, proba.max(-1), {"long_name": "probability of the label"}),
        "entropy": (dims, nav(pred.entropy), {"units": "nat", "long_name": "total predictive entropy"}),
        "aleatoric": (dims, nav(pred.aleatoric), {"units": "nat", "long_name": "expected entropy"}),
        "epistemic": (dims, nav(pred.epistemic), {"units": "nat", "long_name": "mutual information"}),
        "var_from_encoder": (dims, enc, {"long_name": "Var_z E_f f, mean over classes"}),
        "var_from_gp": (dims, gp, {"long_name": "E_z Var_f f, mean over classes"}),
        "encoder_share": (dims, enc / (enc + gp), {"long_name": "share of f variance from the encoder"}),
        "latent_mean": ((*dims, "latent"), latent_mean.reshape(*nav_shape, -1)),
        "latent_var": ((*dims, "latent"), latent_var.reshape(*nav_shape, -1)),
    }
    coords = {"class": np.asarray(classes, dtype=str)}
    attrs = {"source": source, "integration": mode, "classes": ", ".join(map(str, classes))}
    return xr.Dataset(data, coords=coords, attrs=attrs)


def to_hyperspy(ds: xr.Dataset, variable: str = "label") -> Any:
    """One map of ``ds`` as a HyperSpy ``Signal2D`` (navigation-only variables)."""
    import hyperspy.api as hs

    da = ds[variable]
    if "class" in da.dims or "latent" in da.dims:
        raise ValueError(f"{variable} has a class/latent axis; pick one with .sel() first")
    signal = hs.signals.Signal2D(np.atleast_2d(da.values))
    signal.metadata.General.title = f"eelsprint {variable}"
    return signal


def plot_maps(ds: xr.Dataset, path: str | Path, truth: np.ndarray | None = None, max_frames: int = 6) -> Path:
    """Label, confidence and epistemic maps per frame (rows), saved as PNG; optional truth row."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    label = ds["label"].values
    if label.ndim == 2:
        label = label[None]
    frames = min(len(label), max_frames)
    rows = [("label", label, "tab10"), ("confidence", ds["confidence"].values, "viridis"),
            ("epistemic", ds["epistemic"].values, "magma")]
    if truth is not None:
        rows.insert(0, ("truth", np.where(truth < 0, np.nan, truth), "tab10"))
    fig, axes = plt.subplots(len(rows), frames, figsize=(2.4 * frames, 1.9 * len(rows)), squeeze=False)
    n_classes = ds.sizes["class"]
    for r, (name, values, cmap) in enumerate(rows):
        values = values.reshape(label.shape)
        limits = (0, n_classes - 1) if name in ("label", "truth") else (None, None)
        for f in range(frames):
            im = axes[r, f].imshow(values[f], cmap=cmap, vmin=limits[0], vmax=limits[1], interpolation="nearest")
            axes[r, f].set_xticks([])
            axes[r, f].set_yticks([])
            if f == 0:
                axes[r, f].set_ylabel(name)
        fig.colorbar(im, ax=axes[r, :].tolist(), shrink=0.8)
    fig.suptitle("eelsprint: classes " + ", ".join(f"{i}={c}" for i, c in enumerate(ds["class"].values)))
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
