"""Settings as small frozen dataclasses that validate themselves, loadable from TOML.

One :class:`Config` groups them; it is stored with every trained model so that
classification applies exactly the preprocessing the model was trained with.
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from eelsprint.exceptions import ConfigError

Window = tuple[float, float] | None


def _check_window(name: str, window: Window) -> None:
    if window is not None and not (len(window) == 2 and window[0] < window[1]):
        raise ConfigError(f"{name} must be (low, high) in eV with low < high, got {window}")


def _check_positive(**values: float) -> None:
    for name, value in values.items():
        if not value > 0:
            raise ConfigError(f"{name} must be > 0, got {value}")


def _check_choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    """``ConfigError("mode must be 'a', 'b' or 'c', got 'x'")`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        quoted = [f"'{c}'" for c in choices]
        allowed = f"{', '.join(quoted[:-1])} or {quoted[-1]}"
        raise ConfigError(f"{name} must be {allowed}, got {value!r}")


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
            _check_window(name, getattr(self, name))
        if self.rebin < 1:
            raise ConfigError(f"rebin must be >= 1, got {self.rebin}")
        _check_choice("normalise", self.normalise, ("none", "area", "edge"))
        if self.normalise == "edge" and self.normalise_window is None:
            raise ConfigError("normalise='edge' needs normalise_window = [low, high] in eV")
        if self.pca_components < 1:
            raise ConfigError(f"pca_components must be >= 1, got {self.pca_components}")


@dataclass(frozen=True)
class NuisanceConfig:
    """Ranges of the nuisance added to the library before it is encoded.

    Attributes
    ----------
    n_augment : int
        Augmented copies per fingerprint (the clean fingerprint is always kept too).
    scale_sd : float
        Standard deviation of the multiplicative normalisation error.
    shift_ev : float
        Largest energy shift (eV), drawn uniformly in ``[-shift_ev, shift_ev]``.
    broaden_ev : float
        Largest extra Gaussian broadening (eV, standard deviation).
    background_tilt : float
        Largest linear background residual at the window's ends, relative to the
        library's largest intensity.
    """

    n_augment: int = 24
    scale_sd: float = 0.08
    shift_ev: float = 0.5
    broaden_ev: float = 0.5
    background_tilt: float = 0.03

    def __post_init__(self) -> None:
        if self.n_augment < 0:
            raise ConfigError(f"n_augment must be >= 0, got {self.n_augment}")
        for name in ("scale_sd", "shift_ev", "broaden_ev", "background_tilt"):
            if getattr(self, name) < 0:
                raise ConfigError(f"{name} must be >= 0, got {getattr(self, name)}")


@dataclass(frozen=True)
class ModelConfig:
    """Architecture of the encoders and the GP classifier.

    The convolutional stack is the paper's (filters 16/32/32/64, kernels 7/7/3/3,
    stride 2, LeakyReLU 0.3, dropout 0.2); the latent is smaller than the paper's
    16 dimensions by default, with free bits, to avoid posterior collapse.
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
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.epochs, self.raw_epochs, self.gp_iterations, self.batch_size) < 1:
            raise ConfigError("epochs, raw_epochs, gp_iterations and batch_size must be >= 1")
        _check_positive(lr=self.lr, gp_lr=self.gp_lr)
        if self.kl_anneal_epochs < 0:
            raise ConfigError(f"kl_anneal_epochs must be >= 0, got {self.kl_anneal_epochs}")
        if not 0.0 <= self.variance_holdout < 1.0:
            raise ConfigError(f"variance_holdout must be in [0, 1), got {self.variance_holdout}")


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
    head_precision: Literal["fp32", "bf16", "int8"] = "fp32"

    def __post_init__(self) -> None:
        _check_choice("mode", self.mode, ("fast", "exact", "head"))
        if min(self.mc_samples, self.f_samples, self.batch_size) < 1:
            raise ConfigError("mc_samples, f_samples and batch_size must be >= 1")
        _check_choice("head_precision", self.head_precision, ("fp32", "bf16", "int8"))


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
        _check_positive(lr=self.lr)
        _check_choice("teacher", self.teacher, ("fast", "exact"))


@dataclass(frozen=True)
class Config:
    """Every setting of a model, one section per concern."""

    preprocess: PreprocessConfig = field(default_factory=PreprocessConfig)
    nuisance: NuisanceConfig = field(default_factory=NuisanceConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    head: HeadConfig = field(default_factory=HeadConfig)

    def to_dict(self) -> dict[str, Any]:
        """Plain dictionary (JSON/TOML friendly; tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> Config:
        """Build from a nested dictionary; unknown sections or keys are errors."""
        sections = {f.name: f.type for f in dataclasses.fields(cls)}
        kinds = {
            "preprocess": PreprocessConfig,
            "nuisance": NuisanceConfig,
            "model": ModelConfig,
            "train": TrainConfig,
            "inference": InferenceConfig,
            "head": HeadConfig,
        }
        unknown = set(data) - set(sections)
        if unknown:
            raise ConfigError(f"{source}: unknown section(s) {sorted(unknown)}; expected {sorted(sections)}")
        parts = {}
        for name, kind in kinds.items():
            values = dict(data.get(name, {}))
            known = {f.name for f in dataclasses.fields(kind)}
            bad = set(values) - known
            if bad:
                raise ConfigError(
                    f"{source}: unknown key(s) {sorted(bad)} in [{name}]; expected {sorted(known)}"
                )
            values = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
            try:
                parts[name] = kind(**values)
            except ConfigError as err:
                raise ConfigError(f"{source}: [{name}] {err}") from None
            except TypeError as err:
                raise ConfigError(f"{source}: [{name}] {err}") from None
        return cls(**parts)

    @classmethod
    def from_toml(cls, path: str | Path) -> Config:
        """Read a TOML file with optional sections ``[preprocess]``, ``[nuisance]``, ...

        Raises
        ------
        ConfigError
            If the file is missing, is not valid TOML or holds invalid values.
        """
        path = Path(path)
        try:
            data = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise ConfigError(f"{path}: config file not found") from None
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
            raise ConfigError(f"{path}: not a valid TOML file ({err})") from None
        except OSError as err:  # a folder, no permission
            raise ConfigError(f"{path}: cannot read config file ({err.strerror or err})") from None
        return cls.from_dict(data, source=str(path))

    def replace(self, **sections: Any) -> Config:
        """Copy with whole sections replaced, e.g. ``cfg.replace(train=TrainConfig(epochs=5))``."""
        return dataclasses.replace(self, **sections)
