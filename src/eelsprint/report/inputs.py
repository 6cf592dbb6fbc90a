"""What a report is built from: its settings, the frames of its inputs, and the shared data.

Split from :mod:`eelsprint.report.build` so that the report's parts
(:mod:`~eelsprint.report.sections`, :mod:`~eelsprint.report.truth`) import these types
without importing the module that calls them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from tqdm.auto import tqdm

from eelsprint.data.spectra import Spectra
from eelsprint.exceptions import ConfigError, InputDataError

if TYPE_CHECKING:
    from eelsprint.classify import FingerprintClassifier

__all__ = ["Frame", "ReportConfig", "ReportData", "frames_axis_of", "frames_of"]


@dataclass(frozen=True)
class ReportConfig:
    """Settings of an evaluation report.

    Attributes
    ----------
    threshold : float
        Total predictive entropy (nats) above which a pixel counts as uncertain.
    n_draws : int
        Posterior draws per pixel (stored in ``posterior.nc``).
    hdi_prob : float
        Probability mass of the highest-density intervals of class fractions.
    calibration_fraction : float
        Share of the labelled pixels used to fit temperature scaling; the rest are held out.
    n_bins : int
        Equal-mass bins of the ECE and the reliability diagram.
    n_bootstrap : int
        Bootstrap resamples of the reliability diagram's bands.
    tsne_points : int
        Pixels (a random subset) shown in the t-SNE figure.
    silhouette_points : int
        Frames larger than this are scored on a random subset.
    baselines : bool
        Run the baselines of :mod:`eelsprint.report.baselines` too.
    seed : int
        Seed of every random choice of the report.
    """

    threshold: float = 0.5
    n_draws: int = 100
    hdi_prob: float = 0.94
    calibration_fraction: float = 0.3
    n_bins: int = 10
    n_bootstrap: int = 200
    tsne_points: int = 1000
    silhouette_points: int = 2000
    baselines: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not self.threshold > 0:
            raise ConfigError(f"threshold must be > 0 nats, got {self.threshold}")
        if not 0 < self.hdi_prob < 1 or not 0 < self.calibration_fraction < 1:
            raise ConfigError("hdi_prob and calibration_fraction must lie strictly between 0 and 1")
        if (
            min(self.n_draws, self.n_bins, self.n_bootstrap) < 2
            or min(self.tsne_points, self.silhouette_points) < 10
        ):
            raise ConfigError("n_draws, n_bins and n_bootstrap must be >= 2; tsne/silhouette points >= 10")


@dataclass(frozen=True)
class Frame:
    """One frame (a scan at one temperature or time) of the pixels being evaluated.

    Attributes
    ----------
    name : str
        Label in tables and figures.
    start : int
        Index of its first pixel in the report's flat pixel order.
    shape : tuple of int
        Its scan shape (navigation shape without the frames axis).
    """

    name: str
    start: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        """Number of pixels."""
        return math.prod(self.shape)

    @property
    def stop(self) -> int:
        """One past its last pixel."""
        return self.start + self.size

    def map(self, values: np.ndarray) -> np.ndarray:
        """This frame's part of flat per-pixel ``values`` as a 2-D image (1-D scans become one row)."""
        part = values[self.start : self.stop]
        if len(self.shape) == 2:
            return part.reshape(self.shape)
        return part.reshape(-1, self.shape[-1] if self.shape else 1)


def frames_of(
    spectra: Sequence[Spectra], names: Sequence[str], frames_axis: int | None = None
) -> list[Frame]:
    """Split inputs into frames: along ``frames_axis`` of each input's navigation, or one frame per input.

    ``frames_axis=None`` takes axis 0 of inputs with 3 or more navigation axes
    (a series of frames) and keeps lower-dimensional inputs whole.

    Raises
    ------
    InputDataError
        If ``frames_axis`` does not exist in an input's navigation shape.
    """
    frames, start = [], 0
    for s, name in zip(spectra, names, strict=True):
        nav = s.nav_shape
        axis = frames_axis_of(nav, frames_axis, s.source)
        if axis is None:
            frames.append(Frame(name, start, nav))
            start += math.prod(nav)
            continue
        inner = nav[:axis] + nav[axis + 1 :]
        for i in range(nav[axis]):
            frames.append(Frame(f"{name}[{i}]" if len(spectra) > 1 else f"frame {i}", start, inner))
            start += math.prod(inner)
    return frames


def frames_axis_of(nav: tuple[int, ...], frames_axis: int | None, source: str) -> int | None:
    """The frames axis of navigation shape ``nav`` (``None``: the input is one frame)."""
    if frames_axis is None:
        return 0 if len(nav) >= 3 else None
    if not -len(nav) <= frames_axis < len(nav):
        raise InputDataError(
            f"{source}: frames axis {frames_axis} does not exist in navigation shape {nav}; "
            f"pass --frames-axis between {-len(nav)} and {len(nav) - 1}"
        )
    return frames_axis % len(nav)


@dataclass
class ReportData:
    """What every part of the report works from."""

    clf: FingerprintClassifier
    x: np.ndarray  # (n_pixels, n_channels) on the model's axis, frames first
    frames: list[Frame]
    labels: np.ndarray | None  # ground truth, -1 = in no library class
    config: ReportConfig
    bar: tqdm
    loop: list[dict[str, Any]] | None = None  # rounds of an active-learning loop record

    @property
    def starts(self) -> np.ndarray:
        """Index of each frame's first pixel."""
        return np.array([f.start for f in self.frames])

    @property
    def names(self) -> list[str]:
        """Frame names."""
        return [f.name for f in self.frames]

    @property
    def classes(self) -> list[str]:
        """The model's class names."""
        return [str(c) for c in self.clf.classes_]

    def step(self, stage: str) -> None:
        """Advance the progress bar to ``stage``."""
        self.bar.set_description(f"report: {stage}")
        self.bar.update()
