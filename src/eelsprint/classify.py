"""`FingerprintClassifier`: the scikit-learn-style estimator that ties eelsprint together.

fit: preprocess -> library on the data's axis (+ nuisance) -> PCA target ->
Pyro VAE -> raw encoder -> library latents -> GPyTorch classifier.
predict: preprocess -> raw encoder N(mu, var) -> integrate over z and f.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from eelsprint.config import Config
from eelsprint.data import checks
from eelsprint.data.augment import augment_library
from eelsprint.data.io import as_spectra
from eelsprint.data.preprocess import crop, library_on_axis, pca_denoise, preprocess, resample
from eelsprint.data.spectra import Library, Spectra
from eelsprint.data.store import check_tensors, load_model_dir, save_model_dir
from eelsprint.exceptions import (
    ConfigError,
    EelsprintError,
    InputDataError,
    ModelFileError,
    NotFittedError,
    first_line,
)
from eelsprint.inference.train import latent_training_set, train_gp, train_raw_encoder, train_vae
from eelsprint.inference.uncertainty import GPPosterior, Prediction, predict_exact, predict_fast
from eelsprint.models.head import Precision, RealtimeModel, with_precision
from eelsprint.models.vae import ConvEncoder, SpectrumVAE

#: Integration modes of :meth:`FingerprintClassifier.predict_proba`.
MODES = ("fast", "exact", "head")


class FingerprintClassifier:
    """Label noisy EELS spectra against a fingerprint library, with calibrated uncertainty.

    Parameters
    ----------
    config : Config, optional
        All settings; ``Config()`` when omitted.
    progress : bool
        Show progress bars during training and long classification.

    Attributes
    ----------
    classes_ : ndarray of str
        Library labels, the order of the ``proba`` columns.
    energy_ : ndarray
        The model's energy axis (eV) after preprocessing and library overlap.
    vae_, raw_encoder_ : torch modules
    gp_ : GPPosterior
    head_ : UncertaintyHead or None
        The dense head distilled from the GP for mode ``"head"`` (:mod:`eelsprint.inference.runtime`).
    diagnostics_ : dict
        Training diagnostics (latent KL per dimension, active dimensions, raw-encoder loss,
        the head's agreement with the GP under ``"head"``).

    Examples
    --------
    >>> from eelsprint.data.simulate import simulate_series
    >>> series = simulate_series(n_frames=2, shape=(10, 12))
    >>> clf = FingerprintClassifier(config=Config.from_dict({"train": {"epochs": 2, "raw_epochs": 2,
    ...     "gp_iterations": 20}}), progress=False).fit(series.spectra, series.library)
    >>> clf.predict_proba(series.spectra).shape
    (2, 10, 12, 4)
    """

    def __init__(self, *, config: Config | None = None, progress: bool = True) -> None:
        self.config = config
        self.progress = progress

    # -- fitting -------------------------------------------------------------------------------
    def fit(self, X: Any, library: Library, energy: np.ndarray | None = None) -> FingerprintClassifier:
        """Train the VAE, the raw encoder and the GP classifier.

        Parameters
        ----------
        X : Spectra, HyperSpy Signal1D or array-like of shape (..., n_channels)
            Raw (noisy) spectra of the experiment; unlabelled.
        library : Library
            Fingerprint spectra with their labels (at least two classes).
        energy : ndarray of shape (n_channels,), optional
            Energy axis (eV) when ``X`` is a plain array.

        Returns
        -------
        self
        """
        cfg = self.config or Config()
        torch.manual_seed(cfg.train.seed)
        rng = np.random.default_rng(cfg.train.seed)
        raw_input = as_spectra(X, energy)
        checks.check_float32(raw_input.flat(), raw_input.nav_shape, raw_input.source)
        checks.check_float32(library.spectra, (len(library.spectra),), library.source)
        spectra = preprocess(raw_input, cfg.preprocess)
        lib = library_on_axis(library, spectra.energy, cfg.preprocess)
        checks.check_distinct_classes(lib)
        spectra = crop(spectra, (lib.energy[0], lib.energy[-1]))
        x = spectra.flat()
        if len(x) < 2:
            raise InputDataError(f"{spectra.source}: need at least 2 spectra to fit, got {len(x)}")
        checks.check_not_constant(x, spectra.source)
        checks.check_float32(x, spectra.nav_shape, spectra.source)
        target = pca_denoise(x, cfg.preprocess.pca_components, seed=cfg.train.seed)
        augmented = augment_library(lib, cfg.nuisance, rng)
        scale = float(np.quantile(np.abs(np.concatenate([target, lib.spectra])), 0.99)) or 1.0

        n_channels = spectra.n_channels
        vae = SpectrumVAE(n_channels, cfg.model)
        raw = ConvEncoder(n_channels, cfg.model)
        for buffer in (vae.encoder.input_scale, vae.decoder.output_scale, raw.input_scale):
            buffer.fill_(scale)
        t = torch.as_tensor
        vae_x = t(np.concatenate([target, augmented.spectra]), dtype=torch.float32)
        diag = train_vae(vae, vae_x, cfg.train, cfg.model, self.progress)
        raw_loss, variance_ratio = train_raw_encoder(
            raw,
            vae.encoder,
            t(x, dtype=torch.float32),
            t(target, dtype=torch.float32),
            cfg.train,
            self.progress,
        )
        per_spectrum = math.ceil(cfg.model.samples_per_fingerprint / (1 + cfg.nuisance.n_augment))
        z, y = latent_training_set(
            vae.encoder,
            t(augmented.spectra, dtype=torch.float32),
            t(augmented.class_index),
            per_spectrum,
            cfg.train.seed,
        )
        gp, _ = train_gp(z, y, len(lib.classes), cfg.model, cfg.train, self.progress)

        self.config_ = cfg
        self.vae_, self.raw_encoder_, self.gp_ = vae, raw, GPPosterior.from_model(gp)
        self.classes_ = lib.classes
        self.energy_ = spectra.energy
        self.library_ = lib
        self.diagnostics_ = {
            "kl_per_dim": [round(float(v), 4) for v in diag.kl_per_dim],
            "kl_total": round(diag.kl_total, 3),
            "active_dims": diag.active_dims,
            "raw_encoder_nll": round(raw_loss, 4),
            "raw_variance_ratio": None if math.isnan(variance_ratio) else round(variance_ratio, 4),
            "raw_scale_factor": [round(float(v), 4) for v in raw.scale_factor],
            "n_spectra": len(x),
            "overlap_ev": [float(lib.energy[0]), float(lib.energy[-1])],
        }
        self.head_ = None
        if cfg.head.enabled:  # the real-time path (mode "head"): a dense head distilled from the GP
            from eelsprint.inference.distil import distil_head

            self.head_, self.diagnostics_["head"] = distil_head(
                raw, self.gp_, t(x, dtype=torch.float32), cfg.head, cfg.train.seed
            )
        return self

    # -- prediction ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "gp_"):
            raise NotFittedError("this FingerprintClassifier is not fitted yet; call fit() or load() first")

    def _model_input(self, X: Any, energy: np.ndarray | None) -> tuple[np.ndarray, tuple[int, ...], str]:
        """Preprocess as at fit time and put on the model's axis -> (flat spectra, nav shape, source)."""
        self._check_fitted()
        if not isinstance(X, Spectra) and energy is None and np.shape(X)[-1:] == self.energy_.shape:
            spectra = as_spectra(X, self.energy_)
        else:
            spectra = preprocess(as_spectra(X, energy), self.config_.preprocess)
            spectra = resample(spectra, self.energy_)
        if spectra.data.size == 0:
            raise InputDataError(f"{spectra.source}: holds no spectra (navigation shape {spectra.nav_shape})")
        checks.check_float32(spectra.flat(), spectra.nav_shape, spectra.source)
        return spectra.flat(), spectra.nav_shape, spectra.source

    def encode(self, X: Any, energy: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The raw encoder's latent mean and variance, each of shape (..., latent_dim)."""
        x, nav, _ = self._model_input(X, energy)
        mu, var = self._encode(torch.as_tensor(x, dtype=torch.float32))
        return mu.numpy().reshape(*nav, -1), var.numpy().reshape(*nav, -1)

    @torch.no_grad()
    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, scale = self.raw_encoder_(x)
        return loc, scale.pow(2)

    @torch.no_grad()
    def _predict_chunks(self, x: np.ndarray, mode: str | None) -> tuple[Prediction, np.ndarray, np.ndarray]:
        inf = self.config_.inference
        mode = mode or inf.mode
        if mode not in MODES:
            raise ConfigError(f"unknown mode {mode!r}; expected one of {', '.join(MODES)}")
        if mode == "head":
            from eelsprint.inference.runtime import predict_head

            precision = self.config_.inference.head_precision
            return predict_head(self.realtime_model(precision), x, precision)
        generator = torch.Generator().manual_seed(self.config_.train.seed)
        parts, mus, vars_ = [], [], []
        chunks = range(0, len(x), inf.batch_size)
        for start in tqdm(chunks, desc="classify", disable=not self.progress or len(chunks) < 8, leave=False):
            mu, var = self._encode(torch.as_tensor(x[start : start + inf.batch_size], dtype=torch.float32))
            if mode == "exact":
                parts.append(predict_exact(self.gp_, mu, var, inf.mc_samples, inf.f_samples, generator))
            else:
                parts.append(predict_fast(self.gp_, mu, var))
            mus.append(mu)
            vars_.append(var)
        joined = Prediction(
            *(torch.cat([getattr(p, k) for p in parts]) for k in Prediction.__dataclass_fields__)
        )
        return joined, torch.cat(mus).numpy(), torch.cat(vars_).numpy()

    def predict_proba(self, X: Any, energy: np.ndarray | None = None, mode: str | None = None) -> np.ndarray:
        """Class probabilities integrated over the encoder's latent and the GP, shape (..., n_classes)."""
        x, nav, source = self._model_input(X, energy)
        proba = self._predict_chunks(x, mode)[0].proba.numpy()
        checks.check_finite_result(proba, nav, source)
        return proba.reshape(*nav, -1)

    def predict(self, X: Any, energy: np.ndarray | None = None, mode: str | None = None) -> np.ndarray:
        """Most probable library label per spectrum, shape (...)."""
        proba = self.predict_proba(X, energy, mode)
        return self.classes_[proba.argmax(-1)]

    def classify(self, X: Any, energy: np.ndarray | None = None, mode: str | None = None) -> xr.Dataset:
        """Everything per spectrum as an :class:`xarray.Dataset` (see :func:`eelsprint.maps.to_dataset`)."""
        from eelsprint.maps import to_dataset

        x, nav, source = self._model_input(X, energy)
        pred, mu, var = self._predict_chunks(x, mode)
        checks.check_finite_result(pred.proba.numpy(), nav, source)
        return to_dataset(
            pred, mu, var, nav, self.classes_, source=source, mode=mode or self.config_.inference.mode
        )

    def stream(
        self, frames: Iterable[Any], energy: np.ndarray | None = None, mode: str | None = None
    ) -> Iterator[xr.Dataset]:
        """Classify frames one at a time as they arrive (a live acquisition), one Dataset each.

        Parameters
        ----------
        frames : iterable of Spectra, HyperSpy Signal1D or array-like of shape (..., n_channels)
            Consumed lazily; arrays on the model's energy axis need no ``energy``.
        energy : ndarray of shape (n_channels,), optional
            Energy axis (eV) of plain-array frames that are not on the model's axis.
        mode : {"head", "fast", "exact"}, optional
            Default: ``"head"`` (the real-time path) when the model has a distilled
            head, else the model's configured mode.

        Yields
        ------
        xarray.Dataset
            As :meth:`classify`, with ``attrs["frame"]`` (0, 1, ...) and
            ``attrs["latency_ms"]`` (preprocessing + classification of that frame).

        Examples
        --------
        >>> for ds in clf.stream(series.spectra.data):  # doctest: +SKIP
        ...     print(ds.attrs["frame"], ds.attrs["latency_ms"], ds["label"].shape)
        """
        self._check_fitted()
        mode = mode or ("head" if getattr(self, "head_", None) is not None else None)
        for index, frame in enumerate(frames):
            start = time.perf_counter()
            ds = self.classify(frame, energy, mode)
            ds.attrs.update(frame=index, latency_ms=1e3 * (time.perf_counter() - start))
            yield ds

    def realtime_model(self, precision: Precision = "fp32") -> nn.Module:
        """The real-time graph (raw encoder + distilled head) in ``precision``, cached.

        Parameters
        ----------
        precision : {"fp32", "bf16", "int8"}
            Numerical precision of the CPU graph (see :func:`eelsprint.models.head.with_precision`).

        Returns
        -------
        torch.nn.Module
            Maps ``(B, n_channels)`` float32 spectra to the outputs in
            :data:`eelsprint.models.head.OUTPUTS`; cached until the model is re-fitted or re-loaded.

        Raises
        ------
        NotFittedError
            If the classifier is not fitted, or has no distilled head (fitted with
            ``head.enabled = false`` or saved by an older eelsprint).
        """
        self._check_fitted()
        head = getattr(self, "head_", None)
        if head is None:
            raise NotFittedError(
                "this model has no distilled head (mode 'head'); re-fit it with [head] enabled = true, "
                "or use mode 'fast' or 'exact'"
            )
        cache: dict[tuple[Any, ...], nn.Module] = self.__dict__.setdefault("_realtime_cache", {})
        key = (precision, id(head), id(self.raw_encoder_))
        if key not in cache:
            if len(cache) > 4:
                cache.clear()
            cache[key] = with_precision(RealtimeModel(self.raw_encoder_, head), precision)
        return cache[key]

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the model directory atomically (safetensors weights, JSON config, checksum manifest)."""
        self._check_fitted()
        tensors = {f"vae.{k}": v for k, v in self.vae_.state_dict().items()}
        tensors |= {f"raw.{k}": v for k, v in self.raw_encoder_.state_dict().items()}
        tensors |= self.gp_.tensors()
        head = getattr(self, "head_", None)
        if head is not None:
            tensors |= {f"head.{k}": v for k, v in head.state_dict().items()}
        tensors["library.spectra"] = torch.as_tensor(self.library_.spectra, dtype=torch.float32)
        meta = {
            "config": self.config_.to_dict(),
            "classes": [str(c) for c in self.classes_],
            "library_labels": [str(c) for c in self.library_.labels],
            "library_source": self.library_.source,
            "energy": [float(e) for e in self.energy_],
            "diagnostics": self.diagnostics_,
        }
        save_model_dir(path, tensors, meta)

    @classmethod
    def load(cls, path: str | Path, progress: bool = True) -> FingerprintClassifier:
        """Load a model directory written by :meth:`save` (checksums, names and shapes verified)."""
        kinds = {"config": dict, "classes": list, "energy": list, "library_labels": list, "diagnostics": dict}
        tensors, meta = load_model_dir(path, kinds)
        try:
            return cls._from_stored(tensors, meta, path, progress)
        except (KeyError, TypeError, ValueError, RuntimeError) as err:
            if isinstance(err, EelsprintError):
                raise
            raise ModelFileError(
                f"{path}: model.json disagrees with the weights ({first_line(err)})"
            ) from None

    @classmethod
    def _from_stored(
        cls, tensors: dict[str, torch.Tensor], meta: dict[str, Any], path: str | Path, progress: bool
    ) -> FingerprintClassifier:
        from eelsprint.models.head import UncertaintyHead

        cfg = Config.from_dict(meta["config"], source=str(path))
        self = cls(config=cfg, progress=progress)
        self.config_ = cfg
        energy = np.asarray(meta["energy"], dtype=float)
        c, m, d = len(meta["classes"]), cfg.model.n_inducing, cfg.model.latent_dim
        self.vae_, self.raw_encoder_ = (
            SpectrumVAE(len(energy), cfg.model),
            ConvEncoder(len(energy), cfg.model),
        )
        head_ = UncertaintyHead(d, c, cfg.head.hidden)
        parts: dict[str, nn.Module] = {"vae": self.vae_, "raw": self.raw_encoder_, "head": head_}
        expected = {
            f"{p}.{k}": tuple(v.shape) for p, mod in parts.items() for k, v in mod.state_dict().items()
        }
        gp = {
            "inducing": (c, m, d),
            "lengthscale": (c, d),
            "outputscale": (c,),
            "constant": (c,),
            "alpha": (c, m),
        }
        expected |= {f"gp_cache.{k}": v for k, v in (gp | {"cross": (c, m, m)}).items()}
        expected["library.spectra"] = (len(meta["library_labels"]), len(energy))
        check_tensors(path, tensors, expected, optional=("head.", "raw.scale_factor"))
        stored = {
            p: {k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith(f"{p}.")} for p in parts
        }
        stored["raw"].setdefault("scale_factor", torch.ones(d))  # eelsprint 0.1: uncalibrated
        self.head_ = head_ if stored["head"] else None
        for name, module in parts.items():
            if stored[name]:
                module.load_state_dict(stored[name])
                module.eval()
        self.gp_ = GPPosterior(
            **{k.removeprefix("gp_cache."): tensors[k] for k in expected if k[:3] == "gp_"}
        )
        self.classes_ = np.array(meta["classes"])
        self.energy_ = energy
        labels, source = np.array(meta["library_labels"]), str(meta.get("library_source", path))
        self.library_ = Library(tensors["library.spectra"].double().numpy(), energy, labels, source)
        self.diagnostics_ = dict(meta["diagnostics"])
        return self
