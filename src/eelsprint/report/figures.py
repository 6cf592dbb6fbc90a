"""Figures of an evaluation report, each returned as PNG bytes.

Drawn with matplotlib's object-oriented API (``matplotlib.figure.Figure``, Agg
canvas): no pyplot state, safe in scripts and servers. Numbers in brackets
refer to the figures of Hollenbach et al. (2024) the report reproduces.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure
from matplotlib.patches import Ellipse, Patch

from eelsprint.inference.metrics import ReliabilityCurve

__all__ = [
    "DPI",
    "class_colours",
    "class_maps",
    "confusion",
    "denoised_spectra",
    "fractions",
    "library_latents",
    "png",
    "posterior_predictive",
    "reliability",
    "selective",
    "silhouettes",
    "tsne_panels",
    "value_maps",
]

DPI = 90
_OUTSIDE = "#b0b0b0"


def png(fig: Figure) -> bytes:
    """The figure as PNG bytes."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=DPI, bbox_inches="tight")
    return buffer.getvalue()


def class_colours(n_classes: int) -> list[str]:
    """One colour per class (matplotlib's ``tab10``, repeated past ten classes)."""
    cycle = ["C0", "C1", "C2", "C3", "C4", "C5", "C6", "C7", "C8", "C9"]
    return [cycle[i % len(cycle)] for i in range(n_classes)]


def _grid(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = max(1, min(n, max_cols))
    return -(-n // cols), cols


def class_maps(
    maps: Sequence[np.ndarray], titles: Sequence[str], classes: Sequence[str], title: str
) -> bytes:
    """Label map of every frame in a grid [Fig. 5]; label -1 (no library class) is grey.

    Parameters
    ----------
    maps : sequence of int ndarray of shape (ny, nx)
        Class index per pixel, one map per frame.
    titles : sequence of str
        Frame names.
    classes : sequence of str
    title : str
    """
    rows, cols = _grid(len(maps))
    fig = Figure(figsize=(3.0 * cols, 2.4 * rows + 0.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    cmap = ListedColormap([_OUTSIDE, *class_colours(len(classes))])
    for ax, labels, name in zip(axes, maps, titles, strict=False):
        ax.imshow(labels + 1, cmap=cmap, vmin=-0.5, vmax=len(classes) + 0.5, interpolation="nearest")
        ax.set_title(name, fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(maps) :]:
        ax.set_axis_off()
    handles = [Patch(color=c, label=n) for c, n in zip(class_colours(len(classes)), classes, strict=True)]
    if any((m < 0).any() for m in maps):
        handles.append(Patch(color=_OUTSIDE, label="not in library"))
    fig.legend(handles=handles, loc="outside lower center", ncols=min(len(handles), 6), fontsize=8)
    fig.suptitle(title)
    return png(fig)


def value_maps(rows: Mapping[str, Sequence[np.ndarray]], titles: Sequence[str], title: str) -> bytes:
    """Continuous maps, one row per quantity and one column per frame (shared colour scale per row)."""
    n_rows, n_cols = len(rows), len(titles)
    fig = Figure(figsize=(2.6 * n_cols + 1.0, 2.2 * n_rows), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for r, (name, maps) in enumerate(rows.items()):
        low = min(float(np.nanmin(m)) for m in maps)
        high = max(float(np.nanmax(m)) for m in maps)
        for c, values in enumerate(maps):
            image = axes[r, c].imshow(values, cmap="magma", vmin=low, vmax=high, interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(titles[c], fontsize=9)
        axes[r, 0].set_ylabel(name, fontsize=9)
        fig.colorbar(image, ax=axes[r, :].tolist(), shrink=0.9)
    fig.suptitle(title)
    return png(fig)


def fractions(
    frames: Sequence[str],
    mean: np.ndarray,
    low: np.ndarray,
    high: np.ndarray,
    classes: Sequence[str],
    hdi: float,
) -> bytes:
    """Class fraction per frame with its highest-density interval (error bars)."""
    fig = Figure(figsize=(7.0, 3.6), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(frames))
    for c, (name, colour) in enumerate(zip(classes, class_colours(len(classes)), strict=True)):
        err = np.stack([mean[:, c] - low[:, c], high[:, c] - mean[:, c]]).clip(0)
        ax.errorbar(
            x + 0.05 * (c - len(classes) / 2),
            mean[:, c],
            yerr=err,
            marker="o",
            capsize=3,
            color=colour,
            label=name,
        )
    ax.set_xticks(x, frames, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("class fraction")
    ax.set_ylim(-0.02, 1.02)
    ax.set_title(f"Class fractions per frame ({hdi:.0%} HDI over posterior draws)")
    ax.legend(fontsize=8)
    return png(fig)


def silhouettes(frames: Sequence[str], vae: Sequence[float | None], pca: Sequence[float | None]) -> bytes:
    """Silhouette score per frame, VAE latent vs principal components [Fig. 7b]."""
    fig = Figure(figsize=(6.5, 3.4), layout="constrained")
    ax = fig.subplots()
    x = np.arange(len(frames))
    for values, name, shift in ((vae, "VAE latent", -0.2), (pca, "PCA", 0.2)):
        heights = [np.nan if v is None else v for v in values]
        ax.bar(x + shift, heights, width=0.4, label=name)
    ax.set_xticks(x, frames, rotation=30, ha="right", fontsize=8)
    ax.set_ylabel("silhouette score")
    ax.axhline(0, color="k", lw=0.5)
    ax.set_title("Cluster separation of the predicted classes")
    ax.legend(fontsize=8)
    return png(fig)


def tsne_panels(panels: dict[str, np.ndarray], labels: np.ndarray, classes: Sequence[str]) -> bytes:
    """t-SNE embeddings side by side, coloured by predicted class [Fig. 7a]."""
    fig = Figure(figsize=(4.2 * len(panels), 4.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    colours = np.array(class_colours(len(classes)))
    for ax, (name, points) in zip(axes, panels.items(), strict=True):
        ax.scatter(points[:, 0], points[:, 1], c=colours[labels], s=6, alpha=0.7, linewidths=0)
        ax.set_title(f"t-SNE of {name}")
        ax.set_xticks([])
        ax.set_yticks([])
    handles = [Patch(color=c, label=n) for c, n in zip(colours, classes, strict=True)]
    fig.legend(handles=handles, loc="outside right center", fontsize=8)
    return png(fig)


def denoised_spectra(
    energy: np.ndarray,
    panels: dict[str, tuple[np.ndarray, np.ndarray]],
    library_mean: np.ndarray,
    classes: Sequence[str],
) -> bytes:
    """Denoised spectra per predicted class, mean and +-1 sd band, one panel per method [Fig. 6]."""
    fig = Figure(figsize=(4.6 * len(panels), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels), sharey=True))
    for ax, (name, (mean, sd)) in zip(axes, panels.items(), strict=True):
        for c, colour in enumerate(class_colours(len(classes))):
            ax.plot(energy, mean[c], color=colour, lw=1.2, label=classes[c])
            ax.fill_between(energy, mean[c] - sd[c], mean[c] + sd[c], color=colour, alpha=0.2, lw=0)
            ax.plot(energy, library_mean[c], color=colour, lw=0.8, ls="--")
        ax.set_title(f"{name} (dashed: library)")
        ax.set_xlabel("energy loss (eV)")
    axes[0].set_ylabel("intensity")
    axes[-1].legend(fontsize=8)
    return png(fig)


def library_latents(
    data: np.ndarray,
    labels: np.ndarray,
    loc: np.ndarray,
    scale: np.ndarray,
    library_class: np.ndarray,
    classes: Sequence[str],
    dims: tuple[int, int],
) -> bytes:
    """The library's latent Gaussians (2-sd ellipses) over the data's latent means [Fig. 4]."""
    fig = Figure(figsize=(5.6, 4.8), layout="constrained")
    ax = fig.subplots()
    colours = np.array(class_colours(len(classes)))
    a, b = dims
    ax.scatter(data[:, a], data[:, b], c=colours[labels], s=5, alpha=0.35, linewidths=0)
    for centre, sd, c in zip(loc, scale, library_class, strict=True):
        ax.add_patch(
            Ellipse((centre[a], centre[b]), 4 * sd[a], 4 * sd[b], fill=False, color=colours[c], lw=1.5)
        )
        ax.plot(centre[a], centre[b], marker="x", color=colours[c])
    handles = [Patch(color=c, label=n) for c, n in zip(colours, classes, strict=True)]
    ax.legend(handles=handles, fontsize=8)
    ax.set_xlabel(f"latent dimension {a}")
    ax.set_ylabel(f"latent dimension {b}")
    ax.set_title("Library latent Gaussians (2 sd) over the data's latents")
    return png(fig)


def posterior_predictive(
    energy: np.ndarray,
    observed: np.ndarray,
    decoded: np.ndarray,
    channel_mean: np.ndarray,
    channel_sd: np.ndarray,
    titles: Sequence[str],
) -> bytes:
    """Decoded against observed spectra (a few examples, with ``titles``) and the residual per channel."""
    n = len(observed)
    fig = Figure(figsize=(3.2 * (n + 1), 3.0), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, n + 1))
    for ax, obs, dec, name in zip(axes, observed, decoded, titles, strict=False):
        ax.set_title(name, fontsize=9)
        ax.plot(energy, obs, color="0.6", lw=0.7, label="observed")
        ax.plot(energy, dec, color="C3", lw=1.2, label="decoded")
        ax.set_xlabel("energy loss (eV)")
    axes[0].legend(fontsize=8)
    ax = axes[-1]
    ax.plot(energy, channel_mean, color="k", lw=1)
    ax.fill_between(energy, channel_mean - channel_sd, channel_mean + channel_sd, color="0.7", lw=0)
    ax.axhline(0, color="C3", lw=0.5)
    ax.set_title("residual mean +- sd", fontsize=9)
    ax.set_xlabel("energy loss (eV)")
    return png(fig)


def reliability(curves: dict[str, ReliabilityCurve], eces: dict[str, float]) -> bytes:
    """Reliability diagrams (equal-mass bins, bootstrap band), one panel per set of probabilities."""
    fig = Figure(figsize=(3.6 * len(curves), 3.6), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(curves), sharey=True))
    for ax, (name, curve) in zip(axes, curves.items(), strict=True):
        ax.plot([0, 1], [0, 1], color="k", lw=0.5, ls="--")
        ax.fill_between(curve.confidence, curve.low, curve.high, color="C0", alpha=0.25, lw=0)
        ax.plot(curve.confidence, curve.accuracy, marker="o", ms=3, color="C0")
        ax.set_title(f"{name}\nECE {eces[name]:.3f}", fontsize=9)
        ax.set_xlabel("confidence")
        ax.set_xlim(0, 1.01)
        ax.set_ylim(0, 1.01)
    axes[0].set_ylabel("accuracy")
    return png(fig)


def selective(curves: dict[str, tuple[np.ndarray, np.ndarray]]) -> bytes:
    """Accuracy against the share of pixels kept, rejecting the most uncertain first."""
    fig = Figure(figsize=(5.6, 3.6), layout="constrained")
    ax = fig.subplots()
    for name, (coverage, accuracy) in curves.items():
        ax.plot(coverage, accuracy, lw=1.2, label=f"{name} (area {accuracy.mean():.3f})")
    ax.set_xlabel("share of pixels kept")
    ax.set_ylabel("accuracy of kept pixels")
    ax.set_title("Selective prediction")
    ax.legend(fontsize=8)
    return png(fig)


def confusion(matrix: np.ndarray, classes: Sequence[str]) -> bytes:
    """Confusion matrix counts; the last row is pixels in no library class."""
    fig = Figure(figsize=(1.0 * len(classes) + 2.4, 0.9 * len(classes) + 2.0), layout="constrained")
    ax = fig.subplots()
    ax.imshow(matrix / np.maximum(matrix.sum(1, keepdims=True), 1), cmap="Blues", vmin=0, vmax=1)
    for (i, j), count in np.ndenumerate(matrix):
        ax.text(j, i, str(count), ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(classes)), classes, rotation=30)
    ax.set_yticks(range(len(classes) + 1), [*classes, "not in library"])
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    return png(fig)
