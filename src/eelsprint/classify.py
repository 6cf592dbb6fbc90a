"""`FingerprintClassifier`: the scikit-learn estimator that ties eelsprint together.

fit and predict run :mod:`eelsprint.inference.pipeline`: preprocess -> Pyro VAE -> raw
encoder -> GPyTorch classifier; predict integrates over the encoder's N(mu, var) and f.
The estimator owns its state: only this module sets its ``*_`` attributes.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, Literal, Self

import numpy as np
import torch
import xarray as xr
from sklearn.base import BaseEstimator, clone
from torch import nn

from eelsprint.config import MODES, Config, check_choice
from eelsprint.data import checks
from eelsprint.data.io import as_spectra
from eelsprint.data.preprocess import preprocess, resample
from eelsprint.data.spectra import Library, Spectra
from eelsprint.data.store import default_model_path, load_model_dir, save_model_dir
from eelsprint.exceptions import ConfigError, NotFittedError
from eelsprint.inference import pipeline
from eelsprint.inference.pipeline import FittedParts, encoder_id, resolve_device
from eelsprint.inference.refit import Evidence, refit_parts
from eelsprint.inference.uncertainty import Prediction
from eelsprint.maps import to_dataset
from eelsprint.models.head import Precision, RealtimeModel, with_precision

__all__ = ["FingerprintClassifier"]

Device = Literal["cpu", "cuda", "auto"]


class FingerprintClassifier(BaseEstimator):
    """Label noisy EELS spectra against a fingerprint library, with calibrated uncertainty.

    A scikit-learn estimator: ``get_params``/``set_params`` and :func:`sklearn.base.clone`
    work; ``__init__`` stores its keyword-only arguments unchanged.

    Parameters
    ----------
    config : Config, optional
        All settings; ``Config()`` when omitted. ``config.train.seed`` seeds every random
        draw of ``fit`` (local generators; the global torch RNG is left as it was).
    progress : bool
        Show progress bars during training and long classification.
    device : {"cpu", "cuda", "auto"}
        Where ``fit`` trains and where prediction runs (``"cuda:1"`` picks a GPU;
        ``"auto"``: CUDA when available). Default ``"cpu"``: reproducible bit for bit, and
        the CPU is what the real-time paths are tuned for. Changing it on a fitted
        estimator (``set_params``) moves the model at the next prediction. Results always
        come back as numpy arrays on the CPU.

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
    library_ : Library
        The library on the model's axis.
    device_ : torch.device
        Where the fitted modules are.
    diagnostics_ : dict
        Training diagnostics (latent KL, raw-encoder loss, ``"library_check"``,
        ``"fallback_choice"``/``"spectral_prior"``, the head's agreement with the GP).

    Examples
    --------
    >>> from eelsprint.data.simulate import simulate_series
    >>> series = simulate_series(n_frames=2, shape=(10, 12))
    >>> clf = FingerprintClassifier(config=Config.from_dict({"train": {"epochs": 2, "raw_epochs": 2,
    ...     "gp_iterations": 20}}), progress=False).fit(series.spectra, series.library)
    >>> clf.predict_proba(series.spectra).shape
    (2, 10, 12, 4)
    """

    def __init__(
        self, *, config: Config | None = None, progress: bool = True, device: Device | str = "cpu"
    ) -> None:
        self.config = config
        self.progress = progress
        self.device = device

    def fit(
        self, X: Any, library: Library, energy: np.ndarray | None = None, denoiser: Any = None
    ) -> FingerprintClassifier:
        """Train the VAE, the raw encoder, the GP classifier and the real-time head on ``device``.

        Parameters
        ----------
        X : Spectra, HyperSpy Signal1D or array-like of shape (..., n_channels)
            Raw (noisy) spectra of the experiment; unlabelled.
        library : Library
            Fingerprint spectra with their labels (at least two classes).
        energy : ndarray of shape (n_channels,), optional
            Energy axis (eV) when ``X`` is a plain array.
        denoiser : fitted PCA-like object, optional
            Its ``inverse_transform(transform(x))`` of the preprocessed spectra is the VAE's
            high-SNR target (default: a PCA of ``X``); :mod:`eelsprint.scale.train` fits one on every chunk.

        Returns
        -------
        self

        Raises
        ------
        InputDataError
            Bad spectra or library, or no energy overlap between them.
        ConfigError
            ``device`` unknown, or ``"cuda"`` where there is no CUDA.
        """
        device = resolve_device(self.device)
        spectra, cfg = as_spectra(X, energy), self.config or Config()
        self._set_parts(pipeline.fit_parts(spectra, library, cfg, device, self.progress, denoiser), device)
        return self

    def _set_parts(self, parts: FittedParts, device: torch.device) -> None:
        self.config_ = parts.config
        self.vae_, self.raw_encoder_, self.gp_ = parts.vae, parts.raw_encoder, parts.gp
        self.head_ = parts.head
        self.classes_, self.energy_, self.library_ = parts.classes, parts.energy, parts.library
        self.diagnostics_ = parts.diagnostics
        self.device_, self.encoder_id_ = device, encoder_id(parts.raw_encoder)
        self._realtime_cache: dict[tuple[Any, ...], nn.Module] = {}

    def model_id(self) -> str:
        """A short hash of the whole fitted model and its settings (a resumed result must match it)."""
        self._check_fitted()
        return pipeline.model_id(self._parts())

    def _parts(self) -> FittedParts:
        return FittedParts(
            self.config_, self.vae_, self.raw_encoder_, self.gp_, self.head_,
            self.classes_, self.energy_, self.library_, self.diagnostics_,
        )  # fmt: skip

    def distil_head(self, X: Any, energy: np.ndarray | None = None) -> FingerprintClassifier:
        """Distil (again) the real-time head of mode ``"head"`` on spectra ``X``.

        For a model saved without one (``head.enabled = false`` or eelsprint 0.1).
        Replaces ``head_`` and ``diagnostics_["head"]``; returns ``self``.
        """
        from eelsprint.inference.distil import distil_head

        x = torch.as_tensor(self.prepare(X, energy).flat(), dtype=torch.float32, device=self._on_device())
        head, report = distil_head(self.raw_encoder_, self.gp_, x, self.config_.head, self.config_.train.seed)
        self.head_, self.diagnostics_ = head, {**self.diagnostics_, "head": report}
        self._realtime_cache.clear()
        return self

    def update(self, evidence: Evidence | None = None, library: Library | None = None) -> Self:
        """A new estimator with the GP classifier (and head) refitted on labelled pixels and added
        fingerprints, the encoders shared (:func:`eelsprint.inference.refit.refit_parts`; its report,
        with ``advise_fit``, is ``diagnostics_["update"]``). Results keep their ``encoder_id_``."""
        parts = refit_parts(self._parts(), evidence, library, self._on_device(), self.progress)[0]
        new = clone(self)
        new._set_parts(parts, self.device_)
        return new

    # -- prediction ----------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "gp_"):
            raise NotFittedError("this FingerprintClassifier is not fitted yet; call fit() or load() first")

    def _on_device(self) -> torch.device:
        """Move the fitted state to ``device`` if it was changed since fit/load; the device."""
        self._check_fitted()
        device = resolve_device(self.device)
        if device != self.device_:
            self._set_parts(self._parts().to(device), device)
        return device

    def _mode(self, mode: str | None) -> str:
        """``mode`` checked against :data:`eelsprint.config.MODES`; ``None``: the configured mode."""
        if mode is None:
            self._check_fitted()
            return self.config_.inference.mode
        check_choice("mode", mode, MODES)
        return mode

    def live_mode(self, mode: str | None = None) -> str:
        """The mode for live data: ``mode`` if given (checked), else ``"head"`` when the model
        has a distilled head, else the configured mode (used by :meth:`stream` and ``watch``)."""
        self._check_fitted()
        return self._mode(mode or ("head" if self.head_ is not None else None))

    def prepare(self, X: Any, energy: np.ndarray | None = None) -> Spectra:
        """``X`` preprocessed as at fit time, on the model's energy axis, navigation shape kept.

        Takes ``X`` and ``energy`` as :meth:`predict_proba` does and raises the same errors.
        """
        self._check_fitted()
        if not isinstance(X, Spectra) and energy is None and np.shape(X)[-1:] == self.energy_.shape:
            return as_spectra(X, self.energy_)
        return resample(preprocess(as_spectra(X, energy), self.config_.preprocess), self.energy_)

    def _model_input(self, X: Any, energy: np.ndarray | None) -> tuple[np.ndarray, tuple[int, ...], str]:
        spectra = checks.check_model_input(self.prepare(X, energy))
        return spectra.flat(), spectra.nav_shape, spectra.source

    def encode(self, X: Any, energy: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The raw encoder's latent Gaussian per spectrum: ``latent_mean, latent_var``, each of
        shape (..., latent_dim) for ``X`` of navigation shape (...).

        Takes ``X`` and ``energy`` as :meth:`predict_proba` does and raises the same errors.
        """
        x, nav, _ = self._model_input(X, energy)
        with torch.no_grad():
            mu, scale = self.raw_encoder_(torch.as_tensor(x, dtype=torch.float32, device=self._on_device()))
        return mu.cpu().numpy().reshape(*nav, -1), scale.pow(2).cpu().numpy().reshape(*nav, -1)

    def _predict(self, x: np.ndarray, mode: str) -> tuple[Prediction, np.ndarray, np.ndarray]:
        device = self._on_device()
        graph = self.realtime_model(self.config_.inference.head_precision) if mode == "head" else None
        return pipeline.predict_parts(self._parts(), x, mode, device, graph, self.progress)

    def predict_proba(self, X: Any, energy: np.ndarray | None = None, mode: str | None = None) -> np.ndarray:
        """Class probabilities, integrated over the encoder's latent Gaussian and the GP posterior.

        Parameters
        ----------
        X : Spectra, HyperSpy Signal1D or array-like of shape (..., n_channels)
            Raw spectra, any navigation shape ``(...)``; an array on the model's axis
            (``n_channels == len(energy_)``) needs no ``energy``.
        energy : ndarray of shape (n_channels,), optional
            Energy axis (eV) of a plain array that is not on the model's axis.
        mode : {"fast", "exact", "head"}, optional
            ``"fast"``: closed-form moments and sigma points; ``"exact"``: Monte Carlo over
            z and f (seeded, reproducible); ``"head"``: the distilled real-time graph.
            Default: ``config.inference.mode``.

        Returns
        -------
        proba : ndarray of shape (..., n_classes)
            Columns in the order of ``classes_``; each row sums to 1.

        Raises
        ------
        NotFittedError
            Before ``fit`` or ``load``; mode ``"head"`` on a model without a distilled head.
        ConfigError
            ``mode`` is not one of ``"fast"``, ``"exact"``, ``"head"``.
        InputDataError
            No energy axis for an array, or data that do not cover the model's axis.
        """
        mode = self._mode(mode)
        x, nav, source = self._model_input(X, energy)
        proba = self._predict(x, mode)[0].proba.numpy()
        checks.check_finite_result(proba, nav, source)
        return proba.reshape(*nav, -1)

    def predict(self, X: Any, energy: np.ndarray | None = None, mode: str | None = None) -> np.ndarray:
        """Most probable library label per spectrum: ``classes_[argmax(predict_proba(X))]``.

        Takes the arguments and raises the errors of :meth:`predict_proba`; returns an array of
        str of the navigation shape of ``X``.
        """
        proba = self.predict_proba(X, energy, mode)  # first: it checks the estimator is fitted
        return self.classes_[proba.argmax(-1)]

    def classify(self, X: Any, energy: np.ndarray | None = None, mode: str | None = None) -> xr.Dataset:
        """Everything per spectrum as one :class:`xarray.Dataset` on the scan grid.

        Parameters
        ----------
        X : Spectra, HyperSpy Signal1D or array-like of shape (..., n_channels)
        energy : ndarray of shape (n_channels,), optional
        mode : {"fast", "exact", "head"}, optional
            As in :meth:`predict_proba`.

        Returns
        -------
        xarray.Dataset
            Navigation dims named by :func:`eelsprint.maps.nav_dims` (``pixel``; ``y, x``;
            ``frame, y, x``): ``proba`` (..., class), ``label``, ``confidence``,
            ``entropy``, ``aleatoric``, ``epistemic`` (nats), ``var_from_encoder``,
            ``var_from_gp``, ``encoder_share``, ``ood_score`` (...), ``latent_mean`` and
            ``latent_var`` (..., latent); ``attrs["integration"]`` is the mode used,
            ``attrs["labels_from"]`` ``"latent GP"``, or ``"spectral fallback"`` for a model
            whose latent failed its own library (:mod:`eelsprint.inference.spectral`);
            ``attrs["noise_vs_fit"]``: noise variance against the fitted data's (median).

        Raises
        ------
        NotFittedError, ConfigError, InputDataError
            As :meth:`predict_proba`.

        Warns
        -----
        DoseShiftWarning
            ``noise_vs_fit`` outside [0.5, 2]: probabilities calibrated at the fitted dose only.
        """
        mode = self._mode(mode)
        x, nav, source = self._model_input(X, energy)
        pred, mu, var = self._predict(x, mode)
        checks.check_finite_result(pred.proba.numpy(), nav, source)
        ood, attrs = pipeline.scan_scores(self._parts(), x, source)
        ds = to_dataset(pred, mu, var, nav, self.classes_, source=source, mode=mode, ood=ood)
        ds.attrs.update(encoder_id=self.encoder_id_, **attrs)  # results of one encoder share latent axes
        return ds

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
            Default: :meth:`live_mode` (``"head"`` when the model has a distilled head).

        Yields
        ------
        xarray.Dataset
            As :meth:`classify`, with ``attrs["frame"]`` (0, 1, ...) and
            ``attrs["latency_ms"]`` (preprocessing + classification of that frame).

        Raises
        ------
        NotFittedError, ConfigError
            At the call (not at the first frame): unfitted, or an unknown ``mode``.
        """
        mode = self.live_mode(mode)

        def frames_out() -> Iterator[xr.Dataset]:
            for index, frame in enumerate(frames):
                start = time.perf_counter()
                ds = self.classify(frame, energy, mode)
                ds.attrs.update(frame=index, latency_ms=1e3 * (time.perf_counter() - start))
                yield ds

        return frames_out()

    def realtime_model(self, precision: Precision = "fp32") -> nn.Module:
        """The real-time graph (raw encoder + distilled head) in ``precision``, cached.

        ``precision``: "fp32", "bf16" or "int8" (CPU only; :func:`eelsprint.models.head.with_precision`).
        Maps ``(B, n_channels)`` float32 spectra on ``device_`` to :data:`eelsprint.models.head.OUTPUTS`.
        Raises ``NotFittedError`` when unfitted or without a distilled head, ``ConfigError`` for
        "int8" on CUDA or a model that falls back to the spectra.
        """
        device = self._on_device()
        if pipeline.spectral_prior(self.diagnostics_) is not None:
            raise ConfigError(pipeline.NO_HEAD_FOR_FALLBACK)
        if self.head_ is None:
            raise NotFittedError(
                "this model has no distilled head (mode 'head'); re-fit it with [head] enabled = true, "
                "call distil_head(), or use mode 'fast' or 'exact'"
            )
        if precision == "int8" and device.type != "cpu":
            raise ConfigError(f"head_precision 'int8' runs on the CPU only; use 'fp32' or 'bf16' on {device}")
        key = (precision, id(self.head_), id(self.raw_encoder_))
        if key not in self._realtime_cache:  # at most 3 entries: the cache empties when state changes
            graph = RealtimeModel(self.raw_encoder_, self.head_)
            self._realtime_cache[key] = with_precision(graph, precision)
        return self._realtime_cache[key]

    # -- persistence ---------------------------------------------------------------------------
    def save(self, path: str | Path) -> None:
        """Write the model directory atomically (CPU safetensors weights, JSON config, checksum manifest)."""
        self._check_fitted()
        save_model_dir(path, *self._parts().tensors())

    @classmethod
    def load(
        cls, path: str | Path, progress: bool = True, device: Device | str = "cpu"
    ) -> FingerprintClassifier:
        """Load a model directory written by :meth:`save` (checksums verified, no code executed).

        The estimator's ``config`` is the stored one; ``device`` (``"cpu"``, ``"cuda"``,
        ``"auto"``) is where it runs. Raises ``ModelFileError`` for a missing, incomplete,
        modified or foreign directory and ``ConfigError`` for an unavailable ``device``.
        """
        target = resolve_device(device)
        tensors, meta = load_model_dir(path, pipeline.META_KINDS)
        parts = pipeline.parts_from_tensors(tensors, meta, str(path)).to(target)
        self = cls(config=parts.config, progress=progress, device=device)
        self._set_parts(parts, target)
        return self

    @classmethod
    def load_default(cls, progress: bool = True, device: Device | str = "cpu") -> FingerprintClassifier:
        """The shipped default model (:func:`default_model_path`), loaded as :meth:`load` does."""
        return cls.load(default_model_path(), progress=progress, device=device)
