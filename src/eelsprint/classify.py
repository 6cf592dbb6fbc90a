"""`FingerprintClassifier`: the scikit-learn-style estimator that ties eelsprint together.

fit: preprocess -> library on the data's axis (+ nuisance) -> PCA target ->
Pyro VAE -> raw encoder -> library latents -> GPyTorch classifier.
predict: preprocess -> raw encoder N(mu, var) -> integrate over z and f.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, cast

import numpy as np
import torch
import xarray as xr
from torch import nn
from tqdm.auto import tqdm

from eelsprint.config import Config
from eelsprint.data.io import as_spectra
from eelsprint.data.preprocess import crop, library_on_axis, pca_denoise, preprocess, resample
from eelsprint.data.spectra import Library, Spectra
from eelsprint.data.store import load_model_dir, save_model_dir
from eelsprint.exceptions import InputDataError, NotFittedError
from eelsprint.inference.fitting import fit_parts
from eelsprint.inference.ood import OODScaler, learn_ood, score_pixels
from eelsprint.inference.selfcheck import warn_if_inseparable
from eelsprint.inference.uncertainty import GPPosterior, Prediction, predict_exact, predict_fast
from eelsprint.models.head import Precision, RealtimeModel, with_precision
from eelsprint.models.vae import ConvEncoder, SpectrumVAE


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
        spectra = preprocess(as_spectra(X, energy), cfg.preprocess)
        lib = library_on_axis(library, spectra.energy, cfg.preprocess, cfg.library.measured)
        spectra = crop(spectra, (lib.energy[0], lib.energy[-1]))
        x = spectra.flat()
        if len(x) < 2:
            raise InputDataError(f"{spectra.source}: need at least 2 spectra to fit, got {len(x)}")
        target = pca_denoise(x, cfg.preprocess.pca_components, seed=cfg.train.seed)
        parts = fit_parts(x, target, lib, cfg, self.progress)
        self.config_ = cfg
        self.vae_, self.raw_encoder_, self.gp_ = parts.vae, parts.raw, parts.gp
        self.classes_ = lib.classes
        self.energy_ = spectra.energy
        self.library_ = lib
        self.diagnostics_ = parts.diagnostics
        warn_if_inseparable(parts.check, spectra.source)
        self.head_ = None
        if cfg.head.enabled:  # the real-time path (mode "head"): a dense head distilled from the GP
            from eelsprint.inference.distil import distil_head

            self.head_, self.diagnostics_["head"] = distil_head(
                parts.raw, self.gp_, torch.as_tensor(x, dtype=torch.float32), cfg.head, cfg.train.seed
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
        x, nav, _ = self._model_input(X, energy)
        return self._predict_chunks(x, mode)[0].proba.numpy().reshape(*nav, -1)

    def predict(self, X: Any, energy: np.ndarray | None = None, mode: str | None = None) -> np.ndarray:
        """Most probable library label per spectrum, shape (...)."""
        proba = self.predict_proba(X, energy, mode)
        return self.classes_[proba.argmax(-1)]

    def classify(self, X: Any, energy: np.ndarray | None = None, mode: str | None = None) -> xr.Dataset:
        """Everything per spectrum as an :class:`xarray.Dataset` (see :func:`eelsprint.maps.to_dataset`)."""
        from eelsprint.maps import to_dataset

        x, nav, source = self._model_input(X, energy)
        pred, mu, var = self._predict_chunks(x, mode)
        ood = self.ood_score(x, pred.epistemic.numpy())
        return to_dataset(
            pred,
            mu,
            var,
            nav,
            self.classes_,
            source=source,
            mode=mode or self.config_.inference.mode,
            ood=ood,
        )

    def ood_score(self, x: np.ndarray, epistemic: np.ndarray) -> np.ndarray:
        """Out-of-library score of preprocessed spectra ``x`` (n, n_channels) on the model's axis, (n,).

        See :mod:`eelsprint.inference.ood`. Models fitted before 0.3 carry no standardisation;
        it is then learnt from ``x`` itself (at least 20 spectra, else NaN).
        """
        self._check_fitted()
        stored = self.diagnostics_.get("ood")
        if stored is not None:
            scaler = OODScaler(**cast(dict[str, float], stored))
        elif len(x) >= 20:
            smooth = pca_denoise(x, self.config_.preprocess.pca_components, seed=self.config_.train.seed)
            scaler = learn_ood(x, smooth, self.library_.spectra, self.energy_, epistemic)[0]
        else:
            return np.full(len(x), np.nan)
        return score_pixels(x, self.library_.spectra, self.energy_, epistemic, scaler)

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
        """Load a model directory written by :meth:`save` (checksums verified, no code executed)."""
        tensors, meta = load_model_dir(path)
        cfg = Config.from_dict(meta["config"], source=str(path))
        energy = np.asarray(meta["energy"], dtype=float)
        self = cls(config=cfg, progress=progress)
        self.config_ = cfg
        self.vae_ = SpectrumVAE(len(energy), cfg.model)
        self.raw_encoder_ = ConvEncoder(len(energy), cfg.model)
        self.vae_.load_state_dict({k[4:]: v for k, v in tensors.items() if k.startswith("vae.")})
        raw = {k[4:]: v for k, v in tensors.items() if k.startswith("raw.")}
        raw.setdefault("scale_factor", torch.ones(cfg.model.latent_dim))  # eelsprint 0.1: uncalibrated
        self.raw_encoder_.load_state_dict(raw)
        self.vae_.eval()
        self.raw_encoder_.eval()
        cache = {k.removeprefix("gp_cache."): v for k, v in tensors.items() if k.startswith("gp_cache.")}
        self.gp_ = GPPosterior(**cache)
        head = {k.removeprefix("head."): v for k, v in tensors.items() if k.startswith("head.")}
        self.head_ = None
        if head:
            from eelsprint.models.head import UncertaintyHead

            self.head_ = UncertaintyHead(cfg.model.latent_dim, len(meta["classes"]), cfg.head.hidden)
            self.head_.load_state_dict(head)
            self.head_.eval()
        self.classes_ = np.array(meta["classes"])
        self.energy_ = energy
        self.library_ = Library(
            tensors["library.spectra"].double().numpy(),
            energy,
            np.array(meta["library_labels"]),
            meta["library_source"],
        )
        self.diagnostics_ = meta["diagnostics"]
        return self
