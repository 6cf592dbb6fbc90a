"""The settings' sections: small frozen dataclasses that validate themselves."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from eelsprint.config.checks import (
    MODES,
    Precision,
    Window,
    check_choice,
    check_positive,
    check_precision,
    check_window,
)
from eelsprint.exceptions import ConfigError

__all__ = [
    "ESTIMATED",
    "GP_LATENTS",
    "MIX_LABELS",
    "HeadConfig",
    "InferenceConfig",
    "LibraryConfig",
    "ModelConfig",
    "NuisanceConfig",
    "PreprocessConfig",
    "TrainConfig",
]


@dataclass(frozen=True)
class PreprocessConfig:
    """Opt-in preprocessing steps; with the defaults nothing runs but the PCA target.

    Attributes
    ----------
    window : (float, float) or None
        Crop to this energy range (eV).
    rebin : int
        Sum this many neighbouring channels.
    align_peak : (float, float) or None
        Search window (eV) of a reference peak; every spectrum is shifted so that
        its peak sits at ``align_to`` (default: the window's centre).
    align_to : float or None
        Target energy of the reference peak.
    background_window : (float, float) or None
        Pre-edge window (eV) in which a power law ``A * E**-r`` is fitted and subtracted.
    normalise : {"none", "area", "edge"}
        Divide each spectrum by its total area or by the integral over ``normalise_window``.
    normalise_window : (float, float) or None
        Reference-edge window for ``normalise="edge"``.
    pca_components : int
        Components kept for the PCA-denoised (high-SNR) training target of the VAE.
    """

    window: Window = None
    rebin: int = 1
    align_peak: Window = None
    align_to: float | None = None
    background_window: Window = None
    normalise: Literal["none", "area", "edge"] = "none"
    normalise_window: Window = None
    pca_components: int = 10

    def __post_init__(self) -> None:
        for name in ("window", "align_peak", "background_window", "normalise_window"):
            check_window(name, getattr(self, name))
        if self.rebin < 1:
            raise ConfigError(f"rebin must be >= 1, got {self.rebin}")
        check_choice("normalise", self.normalise, ("none", "area", "edge"))
        if self.normalise == "edge" and self.normalise_window is None:
            raise ConfigError("normalise='edge' needs normalise_window = [low, high] in eV")
        if self.pca_components < 1:
            raise ConfigError(f"pca_components must be >= 1, got {self.pca_components}")


@dataclass(frozen=True)
class LibraryConfig:
    """What the fingerprint library is, and so which preprocessing it gets.

    Attributes
    ----------
    measured : bool
        ``False`` (default): a theory library, background-free and aligned; only the
        data's normalisation applies. ``True``: measured reference spectra, which get
        the data's background subtraction (``[preprocess] background_window``, on the
        library's own energy axis), alignment (``align_peak``) and normalisation.
    """

    measured: bool = False

    def __post_init__(self) -> None:
        if not isinstance(self.measured, bool):
            raise ConfigError(f"measured must be true or false, got {self.measured!r}")


#: The nuisance ranges ``[nuisance] estimate`` can widen to the data's estimate.
ESTIMATED = ("scale_sd", "shift_ev", "background_tilt")
#: Values of ``[train] gp_latents``: what the GP classifier learns from.
GP_LATENTS = ("noisy", "clean")
#: Values of ``[nuisance] mix_label``: how a mixed library copy is labelled.
MIX_LABELS = ("sampled", "dominant")


@dataclass(frozen=True)
class NuisanceConfig:
    """Ranges of the nuisance added to the library before it is encoded.

    Attributes
    ----------
    n_augment : int
        Augmented copies per fingerprint that the encoders train on (the clean
        fingerprint is always kept too); the GP draws its own
        (``[model] samples_per_fingerprint``).
    scale_sd : float
        Standard deviation of the multiplicative normalisation error.
    shift_ev : float
        Largest energy shift (eV), drawn uniformly in ``[-shift_ev, shift_ev]``.
    broaden_ev : float
        Largest extra Gaussian broadening (eV, standard deviation).
    background_tilt : float
        Largest linear background residual at the window's ends, relative to the
        library's largest intensity.
    mix_share : float
        Share of the copies that are mixed pixels (two fingerprints, with the label
        ``mix_label`` says); 0 (the default) turns mixing off. At 0.2 with sampled
        labels (model card, "Mixed copies"; measured before the GP drew its own
        copies): the realistic MXene DFT series' ECE 0.046
        -> 0.027, but the simulator's pure pixels 0.008 -> 0.035 (underconfident); turn
        it on for data with many boundary or mixed pixels. The spectral fallback and the
        separation checks always use pure copies.
    mix_min : float
        Smallest weight of the dominant fingerprint in a mixture, in [0.5, 1].
    mix_label : {"sampled", "dominant"}
        A mixture ``w l_i + (1 - w) l_j`` is labelled ``i`` with probability ``w`` and
        ``j`` otherwise (``"sampled"``: the GP learns that the pixel is uncertain in
        proportion), or always ``i`` (``"dominant"``).
    estimate : bool or tuple of str
        Which of ``scale_sd``, ``shift_ev`` and ``background_tilt`` are widened to the
        values estimated from the data (:func:`eelsprint.inference.ood.estimate_nuisance`,
        reported in ``diagnostics_["nuisance_estimate"]``) where the data show more
        than 1.5 times the value set here (the values set here are floors). ``true``
        names all three, ``false`` none. The default widens the background residual
        only: a class missing from an intensity-coded library reads as normalisation
        scatter, which would blur the classes left (model card, "Robustness").
    """

    n_augment: int = 24
    scale_sd: float = 0.08
    shift_ev: float = 0.5
    broaden_ev: float = 0.5
    background_tilt: float = 0.03
    mix_share: float = 0.0
    mix_min: float = 0.6
    mix_label: str = "sampled"
    estimate: bool | tuple[str, ...] = ("background_tilt",)

    def __post_init__(self) -> None:
        if isinstance(self.estimate, list):
            object.__setattr__(self, "estimate", tuple(self.estimate))
        names = self.estimate if isinstance(self.estimate, tuple) else None
        if not isinstance(self.estimate, bool) and (names is None or not set(names) <= set(ESTIMATED)):
            got = list(names) if names is not None else repr(self.estimate)
            raise ConfigError(f"estimate must be true, false or a list of {', '.join(ESTIMATED)}, got {got}")
        if self.n_augment < 0:
            raise ConfigError(f"n_augment must be >= 0, got {self.n_augment}")
        for name in ("scale_sd", "shift_ev", "broaden_ev", "background_tilt"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0.0 <= self.mix_share <= 1.0 or not 0.5 <= self.mix_min <= 1.0:
            raise ConfigError(
                f"mix_share must be in [0, 1] and mix_min in [0.5, 1], got {self.mix_share}, {self.mix_min}"
            )
        if self.mix_label not in MIX_LABELS:
            raise ConfigError(f"mix_label must be one of {', '.join(MIX_LABELS)}, got {self.mix_label!r}")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the encoders and the GP classifier.

    The convolutional stack is the paper's (filters 16/32/32/64, kernels 7/7/3/3,
    stride 2, LeakyReLU 0.3, dropout 0.2); the latent is smaller than the paper's
    16 dimensions by default, with free bits, to avoid posterior collapse.
    ``samples_per_fingerprint`` is the number of library copies per fingerprint the GP
    classifier learns from (the fingerprint and nuisance copies drawn for the GP alone,
    each encoded once; :func:`eelsprint.inference.train.gp_copies`).
    """

    latent_dim: int = 8
    filters: tuple[int, ...] = (16, 32, 32, 64)
    kernels: tuple[int, ...] = (7, 7, 3, 3)
    dropout: float = 0.2
    negative_slope: float = 0.3
    free_bits: float = 0.25
    n_inducing: int = 48
    samples_per_fingerprint: int = 100

    def __post_init__(self) -> None:
        if len(self.filters) != len(self.kernels) or not self.filters:
            raise ConfigError("filters and kernels must be non-empty and of the same length")
        if self.latent_dim < 1 or self.n_inducing < 1 or self.samples_per_fingerprint < 1:
            raise ConfigError("latent_dim, n_inducing and samples_per_fingerprint must be >= 1")
        if not 0 <= self.dropout < 1:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings (Adam, as in the paper).

    Attributes
    ----------
    epochs, raw_epochs : int
        Passes over the data for the VAE and for the raw encoder.
    gp_iterations : int
        Full-batch steps of the GP classifier; its learning rate decays from
        ``gp_lr`` to ``gp_lr / 20`` on a cosine schedule (the kernel's output scale
        keeps growing for several hundred steps: stopping early leaves the
        classifier underconfident).
    lr, gp_lr : float
        Adam learning rates of the networks and of the GP.
    batch_size : int
    kl_anneal_epochs : int
        Epochs over which the VAE's KL weight rises from 0 to 1.
    variance_holdout : float
        Share of the spectra held out of the raw encoder's training to calibrate
        its variance (see :func:`eelsprint.inference.train.calibrate_scale`).
    min_batches : int
        Fewest optimiser steps per epoch of the VAE and of the raw encoder: small data
        (a line scan of 10-100 spectra) are passed over several times per epoch.
    library_weight : float
        Weight of the semi-supervised term: the cross-entropy of a linear probe on
        the latent draws of the augmented library (0 turns it off).
    gp_latents : {"noisy", "clean"}
        What the GP classifier learns from. ``"noisy"``: the raw encoder's latent
        draws of the augmented library with the data's noise added (the noise model
        fitted on the data), which is what it meets at prediction, so the class
        overlap that counting noise causes is learnt. ``"clean"``: the VAE encoder's
        latent draws of the noise-free augmented library (the earlier default;
        overconfident on noisy data).
    seed : int
    """

    epochs: int = 40
    raw_epochs: int = 40
    gp_iterations: int = 800
    lr: float = 1e-3
    gp_lr: float = 0.1
    batch_size: int = 256
    kl_anneal_epochs: int = 10
    variance_holdout: float = 0.1
    min_batches: int = 10
    library_weight: float = 30.0
    gp_latents: str = "noisy"
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.epochs, self.raw_epochs, self.gp_iterations, self.batch_size) < 1:
            raise ConfigError("epochs, raw_epochs, gp_iterations and batch_size must be >= 1")
        check_positive(lr=self.lr, gp_lr=self.gp_lr)
        if self.kl_anneal_epochs < 0:
            raise ConfigError(f"kl_anneal_epochs must be >= 0, got {self.kl_anneal_epochs}")
        if not 0.0 <= self.variance_holdout < 1.0:
            raise ConfigError(f"variance_holdout must be in [0, 1), got {self.variance_holdout}")
        if self.min_batches < 1 or self.library_weight < 0:
            raise ConfigError("min_batches must be >= 1 and library_weight >= 0")
        if self.gp_latents not in GP_LATENTS:
            raise ConfigError(f"gp_latents must be one of {', '.join(GP_LATENTS)}, got {self.gp_latents!r}")


@dataclass(frozen=True)
class InferenceConfig:
    """How class probabilities integrate over the encoder's latent and the GP.

    Attributes
    ----------
    mode : {"fast", "exact", "head"}
        ``"exact"``: Monte Carlo over z and f. ``"fast"``: closed-form expected
        kernel, linearised encoder variance and sigma-point softmax. ``"head"``:
        the real-time path, the raw encoder and a small dense head distilled from
        the GP's predictive (see :mod:`eelsprint.inference.runtime`), one static graph.
    mc_samples : int
        Latent (z) samples in exact mode; each gets ``f_samples`` GP draws.
    f_samples : int
        GP function draws per latent sample in exact mode.
    batch_size : int
        Spectra per chunk.
    head_precision : {"fp32", "bf16", "int8"}
        Arithmetic of mode ``"head"`` on the CPU: float32, bfloat16 (fast where the CPU
        has AVX-512-BF16/AMX; its cost is measured by ``eelsprint bench``) or int8
        dynamic quantisation of the dense layers.
    """

    mode: Literal["fast", "exact", "head"] = "fast"
    mc_samples: int = 32
    f_samples: int = 16
    batch_size: int = 1024
    head_precision: Precision = "fp32"

    def __post_init__(self) -> None:
        check_choice("mode", self.mode, MODES)
        if min(self.mc_samples, self.f_samples, self.batch_size) < 1:
            raise ConfigError("mc_samples, f_samples and batch_size must be >= 1")
        check_precision(self.head_precision, "eager", "head_precision")


@dataclass(frozen=True)
class HeadConfig:
    """The dense uncertainty head distilled from the GP at the end of ``fit`` (mode ``"head"``).

    Attributes
    ----------
    enabled : bool
        Distil the head (a few seconds); without it mode ``"head"`` is unavailable.
    hidden : int
        Width of the head's two hidden layers.
    n_points : int
        Latent Gaussians labelled by the teacher: the training spectra's, re-encoded
        noisier copies, jittered and interpolated ones and points far from the data.
    epochs : int
        Passes of Adam over those points.
    lr : float
        Adam's initial learning rate (cosine decay to zero).
    teacher : {"fast", "exact"}
        The GP predictive that labels them: closed-form moments or Monte Carlo.
    """

    enabled: bool = True
    hidden: int = 64
    n_points: int = 8192
    epochs: int = 40
    lr: float = 1e-2
    teacher: Literal["fast", "exact"] = "fast"

    def __post_init__(self) -> None:
        if min(self.hidden, self.n_points, self.epochs) < 1:
            raise ConfigError("hidden, n_points and epochs must be >= 1")
        check_positive(lr=self.lr)
        check_choice("teacher", self.teacher, ("fast", "exact"))
