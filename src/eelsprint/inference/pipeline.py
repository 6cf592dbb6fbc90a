"""The fit and predict pipelines, and the fitted parts to and from stored tensors.

fit: preprocess -> library on the data's axis (+ nuisance) -> PCA target -> Pyro VAE ->
raw encoder -> library latents -> GPyTorch classifier -> distilled head.
:class:`~eelsprint.classify.FingerprintClassifier` owns the result (:class:`FittedParts`);
this module only builds it.

Randomness: every draw of ours comes from a local ``torch.Generator`` or numpy
``Generator`` seeded from ``TrainConfig.seed``. Three third-party paths cannot take a
generator and draw from torch's global RNG: module initialisation (``nn.Linear``,
``nn.Conv1d``, ``nn.ConvTranspose1d`` and gpytorch's variational initialisation), dropout,
and Pyro's reparameterised latent samples inside the ELBO. :func:`fit_parts` runs them
under :func:`torch.random.fork_rng` seeded from the config (:func:`seeded_global_rng`), so a
fit, and an update (:mod:`eelsprint.inference.refit`), is reproducible and the caller's global
RNG state is unchanged afterwards.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

from eelsprint.config import Config
from eelsprint.data import checks
from eelsprint.data.preprocess import crop, library_on_axis, pca_denoise, preprocess
from eelsprint.data.spectra import Library, Spectra
from eelsprint.data.store import check_tensors
from eelsprint.exceptions import ConfigError, EelsprintError, InputDataError, ModelFileError, first_line
from eelsprint.inference.chunks import map_chunks
from eelsprint.inference.distil import distil_head
from eelsprint.inference.features import NuisancePrior
from eelsprint.inference.fitting import train_parts
from eelsprint.inference.ood import pixel_scores, warn_dose_shift
from eelsprint.inference.runtime import predict_head
from eelsprint.inference.selfcheck import warn_if_inseparable
from eelsprint.inference.spectral import SpectralPrior, gp_offset
from eelsprint.inference.uncertainty import GPPosterior, Prediction, predict_exact, predict_fast
from eelsprint.models.head import UncertaintyHead
from eelsprint.models.vae import ConvEncoder, SpectrumVAE

__all__ = [
    "DEVICES",
    "META_KINDS",
    "NO_HEAD_FOR_FALLBACK",
    "FittedParts",
    "encoder_id",
    "fit_parts",
    "labels_from",
    "model_id",
    "parts_from_tensors",
    "predict_parts",
    "resolve_device",
    "seeded_global_rng",
    "spectral_prior",
]

#: Why a model that falls back to the spectra has no real-time graph.
NO_HEAD_FOR_FALLBACK = (
    "this model's latent failed its own library and it predicts through the spectral fallback, "
    "which the distilled head cannot reproduce; use mode 'fast' or 'exact'"
)
#: Values of the estimator's ``device`` parameter.
DEVICES = ("cpu", "cuda", "auto")


def resolve_device(device: str | torch.device) -> torch.device:
    """``"cpu"``, ``"cuda"`` (or ``"cuda:1"``), or ``"auto"`` (CUDA when available) as a torch device.

    Raises
    ------
    ConfigError
        Another value, or CUDA asked for where torch sees no CUDA device.
    """
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.split(":")[0] not in ("cpu", "cuda"):
        raise ConfigError(f"device must be 'cpu', 'cuda' or 'auto', got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(
            f"device {name!r} asked for, but torch sees no CUDA device here "
            f"(torch {torch.__version__}, CUDA build {torch.version.cuda}); use device='cpu' or 'auto'"
        )
    return torch.device(name)


def _digest(tensors: dict[str, torch.Tensor], prefix: bytes = b"") -> str:
    """A short SHA-256 of ``prefix`` then every tensor's name and bytes, in name order."""
    digest = hashlib.sha256(prefix)
    for name, tensor in sorted(tensors.items()):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:16]


def encoder_id(encoder: nn.Module) -> str:
    """A short hash of the raw encoder's weights: results of one encoder share latent axes."""
    return _digest(encoder.state_dict())


def model_id(parts: FittedParts) -> str:
    """A short hash of every fitted tensor and the settings: two models with one id predict alike."""
    tensors, meta = parts.tensors()
    settings = {k: v for k, v in meta.items() if k != "diagnostics"}  # config, classes, energy axis
    return _digest(tensors, json.dumps(settings, sort_keys=True).encode())


@dataclass
class FittedParts:
    """Everything a fit learns; the estimator keeps these as its ``*_`` attributes."""

    config: Config
    vae: SpectrumVAE
    raw_encoder: ConvEncoder
    gp: GPPosterior
    head: UncertaintyHead | None
    classes: np.ndarray
    energy: np.ndarray
    library: Library
    diagnostics: dict[str, Any]

    def to(self, device: torch.device) -> FittedParts:
        """Move every module and tensor to ``device`` (in place for the modules); returns ``self``."""
        self.vae.to(device)
        self.raw_encoder.to(device)
        self.gp = self.gp.to(device)
        if self.head is not None:
            self.head.to(device)
        return self

    def tensors(self) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
        """Every tensor by name (on the CPU) and the JSON metadata: a model directory's contents."""
        tensors = {f"vae.{k}": v.cpu() for k, v in self.vae.state_dict().items()}
        tensors |= {f"raw.{k}": v.cpu() for k, v in self.raw_encoder.state_dict().items()}
        tensors |= {k: v.cpu() for k, v in self.gp.tensors().items()}
        if self.head is not None:
            tensors |= {f"head.{k}": v.cpu() for k, v in self.head.state_dict().items()}
        tensors["library.spectra"] = torch.as_tensor(self.library.spectra, dtype=torch.float32)
        meta = {
            "config": self.config.to_dict(),
            "classes": [str(c) for c in self.classes],
            "library_labels": [str(c) for c in self.library.labels],
            "library_source": self.library.source,
            "energy": [float(e) for e in self.energy],
            "diagnostics": self.diagnostics,
        }
        return tensors, meta


@contextlib.contextmanager
def seeded_global_rng(seed: int, device: torch.device) -> Iterator[None]:
    """The body runs with the global CPU (and ``device``'s CUDA) RNG seeded; restored on exit."""
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        torch.random.default_generator.manual_seed(seed)
        if devices:
            with torch.cuda.device(devices[0]):
                torch.cuda.manual_seed(seed)
        yield


def fit_parts(
    spectra: Spectra,
    library: Library,
    cfg: Config,
    device: torch.device,
    progress: bool,
    denoiser: Any = None,
) -> FittedParts:
    """Run the whole fit on ``device``; see the module docstring (randomness) and
    :meth:`FingerprintClassifier.fit <eelsprint.classify.FingerprintClassifier.fit>`."""
    with seeded_global_rng(cfg.train.seed, device):
        return _fit(spectra, library, cfg, device, progress, denoiser)


def _fit(
    spectra: Spectra, library: Library, cfg: Config, device: torch.device, progress: bool, denoiser: Any
) -> FittedParts:
    checks.check_float32(spectra.flat(), spectra.nav_shape, spectra.source)
    checks.check_float32(library.spectra, (len(library.spectra),), library.source)
    spectra = preprocess(spectra, cfg.preprocess)
    lib = library_on_axis(library, spectra.energy, cfg.preprocess, cfg.library.measured)
    checks.check_distinct_classes(lib)
    spectra = crop(spectra, (lib.energy[0], lib.energy[-1]))
    x = spectra.flat()
    if len(x) < 2:
        raise InputDataError(f"{spectra.source}: need at least 2 spectra to fit, got {len(x)}")
    checks.check_not_constant(x, spectra.source)
    checks.check_float32(x, spectra.nav_shape, spectra.source)
    if denoiser is None:
        target = pca_denoise(x, cfg.preprocess.pca_components, seed=cfg.train.seed)
    else:  # fitted out of core on every spectrum (eelsprint.scale.train)
        target = denoiser.inverse_transform(denoiser.transform(x)).astype(x.dtype, copy=False)
    trained = train_parts(x, target, lib, cfg, device, progress)
    warn_if_inseparable(trained.check, spectra.source, trained.diagnostics["fallback_choice"])
    diagnostics = trained.diagnostics
    head = None
    if cfg.head.enabled and trained.prior is None:  # the real-time path (mode "head"): distilled from the GP
        x_t = torch.as_tensor(x, dtype=torch.float32, device=device)
        head, diagnostics["head"] = distil_head(trained.raw, trained.gp, x_t, cfg.head, cfg.train.seed)
    return FittedParts(
        cfg, trained.vae, trained.raw, trained.gp, head, lib.classes, spectra.energy, lib, diagnostics
    )


#: The JSON types of ``model.json``'s required keys (checked at load).
META_KINDS = {"config": dict, "classes": list, "energy": list, "library_labels": list, "diagnostics": dict}


def parts_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any], source: str) -> FittedParts:
    """Rebuild :class:`FittedParts` (on the CPU) from a model directory's contents.

    Tensor names and shapes are checked against what ``model.json`` implies first.

    Raises
    ------
    ModelFileError
        If ``model.json`` and the weights disagree.
    """
    try:
        return _parts_from_tensors(tensors, meta, source)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        if isinstance(err, EelsprintError):
            raise
        raise ModelFileError(f"{source}: model.json disagrees with the weights ({first_line(err)})") from None


def _parts_from_tensors(tensors: dict[str, torch.Tensor], meta: dict[str, Any], source: str) -> FittedParts:
    cfg = Config.from_dict(meta["config"], source=source)
    energy = np.asarray(meta["energy"], dtype=float)
    c, m, d = len(meta["classes"]), cfg.model.n_inducing, cfg.model.latent_dim
    vae, raw_encoder = SpectrumVAE(len(energy), cfg.model), ConvEncoder(len(energy), cfg.model)
    head = UncertaintyHead(d, c, cfg.head.hidden)
    modules: dict[str, nn.Module] = {"vae": vae, "raw": raw_encoder, "head": head}
    expected = {f"{p}.{k}": tuple(v.shape) for p, mod in modules.items() for k, v in mod.state_dict().items()}
    gp = {
        "inducing": (c, m, d),
        "lengthscale": (c, d),
        "outputscale": (c,),
        "constant": (c,),
        "alpha": (c, m),
    }
    expected |= {f"gp_cache.{k}": v for k, v in (gp | {"cross": (c, m, m)}).items()}
    expected["library.spectra"] = (len(meta["library_labels"]), len(energy))
    check_tensors(source, tensors, expected, optional=("head.", "raw.scale_factor"))
    stored = {
        p: {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{p}.")} for p in modules
    }
    stored["raw"].setdefault("scale_factor", torch.ones(d))  # eelsprint 0.1: uncalibrated
    for name, module in modules.items():
        if stored[name]:
            module.load_state_dict(stored[name])
            module.eval()
    cache = {k.removeprefix("gp_cache."): tensors[k] for k in expected if k.startswith("gp_cache.")}
    labels, library_source = np.array(meta["library_labels"]), str(meta.get("library_source", source))
    library = Library(tensors["library.spectra"].double().numpy(), energy, labels, library_source)
    if not all(isinstance(v, str) for v in meta["library_labels"]) or list(library.classes) != list(
        map(str, meta["classes"])
    ):
        raise ModelFileError(f"{source}: model.json's library_labels do not name its classes in order")
    return FittedParts(
        cfg, vae, raw_encoder, GPPosterior(**cache), head if stored["head"] else None,
        np.array(meta["classes"]), energy, library, dict(meta["diagnostics"]),
    )  # fmt: skip


def spectral_prior(diagnostics: dict[str, Any]) -> SpectralPrior | None:
    """A model's spectrum-space fallback (:mod:`eelsprint.inference.spectral`), if its latent failed."""
    stored = diagnostics.get("spectral_prior")
    return None if stored is None else SpectralPrior(**stored)


def labels_from(diagnostics: dict[str, Any]) -> str:
    """Where a model's labels come from: ``"spectral fallback"`` or ``"latent GP"``."""
    return "latent GP" if spectral_prior(diagnostics) is None else "spectral fallback"


def scan_scores(parts: FittedParts, x: np.ndarray, source: str) -> tuple[np.ndarray, dict[str, Any]]:
    """``ood_score`` of preprocessed spectra ``x`` and the result attributes the model gives:
    ``labels_from`` and, for a model that stored its scan's standardisation, ``noise_vs_fit``
    (:func:`~eelsprint.inference.ood.warn_dose_shift` warns outside [0.5, 2])."""
    cfg = parts.config
    nuisance = NuisancePrior.from_ranges(cfg.nuisance.shift_ev, cfg.nuisance.broaden_ev)
    stored, components = parts.diagnostics.get("ood"), cfg.preprocess.pca_components
    ood, ratio = pixel_scores(
        x, parts.library.spectra, parts.energy, stored, components, nuisance, cfg.train.seed
    )
    attrs: dict[str, Any] = {"labels_from": labels_from(parts.diagnostics)}
    if np.isfinite(ratio):
        attrs["noise_vs_fit"] = ratio
        warn_dose_shift(ratio, len(x), source)
    return ood, attrs


@torch.no_grad()
def predict_parts(
    parts: FittedParts,
    x: np.ndarray,
    mode: str,
    device: torch.device,
    graph: nn.Module | None = None,
    progress: bool = False,
) -> tuple[Prediction, np.ndarray, np.ndarray]:
    """Classify model-ready spectra ``x`` (N, n_channels) on ``device``; results on the CPU.

    ``mode`` ``"head"`` runs ``graph`` (the estimator's real-time graph); ``"exact"`` draws
    from a generator on ``device`` seeded from the config. Returns the prediction and the
    latent mean and variance, each (N, latent_dim).
    """
    inf = parts.config.inference
    prior = spectral_prior(parts.diagnostics)
    if mode == "head":
        if prior is not None:
            raise ConfigError(NO_HEAD_FOR_FALLBACK)
        if graph is None:
            raise ValueError("mode 'head' needs the real-time graph")
        return predict_head(graph, x, inf.head_precision, device)
    generator = torch.Generator(device).manual_seed(parts.config.train.seed)

    def predict(chunk: np.ndarray) -> tuple[Prediction, torch.Tensor, torch.Tensor]:
        mu, scale = parts.raw_encoder(torch.as_tensor(chunk, dtype=torch.float32, device=device))
        var = scale.pow(2)
        offset = gp_offset(prior, chunk, parts.library, mu)
        if mode == "exact":
            return predict_exact(parts.gp, mu, var, inf.mc_samples, inf.f_samples, generator, offset), mu, var
        return predict_fast(parts.gp, mu, var, offset), mu, var

    pred, mu, var = map_chunks(predict, x, chunk=inf.batch_size, desc="classify" if progress else None)
    joined = Prediction(*(getattr(pred, k).cpu() for k in Prediction.__dataclass_fields__))
    return joined, mu.cpu().numpy(), var.cpu().numpy()
