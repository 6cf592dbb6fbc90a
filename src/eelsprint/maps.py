"""Results as xarray Datasets, HyperSpy signals and figures."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import xarray as xr

from eelsprint.inference.uncertainty import Prediction

__all__ = ["nav_dims", "plot_maps", "to_dataset", "to_hyperspy"]

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
    ood: np.ndarray | None = None,
) -> xr.Dataset:
    """Per-spectrum results on the input's navigation shape.

    Variables: ``proba`` (nav..., class), ``label`` (index into ``class``),
    ``entropy``, ``aleatoric``, ``epistemic`` (nats), ``var_from_encoder`` and
    ``var_from_gp`` (latent-function variance split), ``encoder_share``,
    ``latent_mean`` and ``latent_var`` (nav..., latent) and, when ``ood`` is given,
    ``ood_score`` (robust standard score, see :mod:`eelsprint.inference.ood`).
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
    if ood is not None:
        data["ood_score"] = (
            dims,
            nav(ood),
            {"long_name": "out-of-library score: max of the standardised library residual and epistemic"},
        )
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
    from matplotlib.colors import ListedColormap

    label = ds["label"].values
    if label.ndim == 2:
        label = label[None]
    frames = min(len(label), max_frames)
    classes = [str(c) for c in ds["class"].values]
    categorical = ListedColormap(plt.get_cmap("tab10")(np.arange(len(classes))))
    rows = [
        ("label", label, categorical),
        ("confidence", ds["confidence"].values, "viridis"),
        ("epistemic (nats)", ds["epistemic"].values, "magma"),
    ]
    if truth is not None:
        rows.insert(0, ("truth", np.where(truth < 0, np.nan, truth), categorical))
    fig, axes = plt.subplots(
        len(rows),
        frames,
        figsize=(1.9 * frames + 1.2, 1.5 * len(rows) + 0.6),
        squeeze=False,
        layout="constrained",
    )
    for r, (name, values, cmap) in enumerate(rows):
        values = values.reshape(label.shape)
        discrete = name in ("label", "truth")
        limits = (-0.5, len(classes) - 0.5) if discrete else (None, None)
        for f in range(frames):
            im = axes[r, f].imshow(
                values[f], cmap=cmap, vmin=limits[0], vmax=limits[1], interpolation="nearest"
            )
            axes[r, f].set_xticks([])
            axes[r, f].set_yticks([])
            if r == 0:
                axes[r, f].set_title(f"frame {f}", fontsize=9)
            if f == 0:
                axes[r, f].set_ylabel(name)
        bar = fig.colorbar(im, ax=axes[r, :].tolist(), shrink=0.9)
        if discrete:
            bar.set_ticks(range(len(classes)), labels=classes)
    if truth is not None:
        axes[0, 0].annotate(
            "white: in no library class", (0, -0.12), xycoords="axes fraction", fontsize=7, va="top"
        )
    from eelsprint.data.atomic import atomic_write

    path = Path(path)
    with atomic_write(path) as tmp:
        fig.savefig(tmp, dpi=110, format="png")
    plt.close(fig)
    return path
