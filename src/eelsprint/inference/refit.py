"""Refit the GP classifier (and its distilled head) on new evidence, keeping the encoders.

The fit's GP learnt from latent draws of the nuisance-augmented library (by default
with the data's noise, through the raw encoder). An update rebuilds that training set
from the (possibly extended) library with the same encoders, noise model and nuisance
estimate, adds draws from the latent Gaussians of labelled
pixels (each weighted like one augmented library copy), and retrains the GP; the
head is distilled again on noisy library copies at the data's noise level. The
VAE and the raw encoder are untouched, so earlier results stay on the same latent
axes and a loop can go on.

A full ``fit`` is advised when the frozen encoders cannot place the new evidence:
when the updated GP labels fewer than :data:`MIN_TRAIN_ACCURACY` of any class's
noise-free library copies (at the raw encoder's latent means) as that class (the latent does
not separate it; the noisy training draws overlap as the data's pixels do), or when the
VAE reconstructs a new fingerprint much worse than the library it was trained on
(:data:`MAX_RECONSTRUCTION_RATIO`). A model whose latent failed its own library at
fit keeps predicting through the spectral fallback (:mod:`eelsprint.inference.spectral`,
on the extended library): its GP is tempered again and the training draws' accuracy,
a property of the latent it does not use, advises nothing.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from eelsprint.data.augment import augment_library
from eelsprint.data.preprocess import library_on_axis
from eelsprint.data.spectra import Library
from eelsprint.exceptions import InputDataError
from eelsprint.inference.chunks import map_chunks
from eelsprint.inference.distil import distil_head
from eelsprint.inference.fitting import with_estimates
from eelsprint.inference.ood import OODScaler
from eelsprint.inference.pipeline import FittedParts, labels_from, seeded_global_rng, spectral_prior
from eelsprint.inference.runtime import CHUNK
from eelsprint.inference.selfcheck import LibraryCheck, temper
from eelsprint.inference.train import gp_copies, gp_training_set, train_gp
from eelsprint.inference.uncertainty import GPPosterior, predict_fast

__all__ = ["MAX_RECONSTRUCTION_RATIO", "MIN_TRAIN_ACCURACY", "Evidence", "extend_library", "refit_parts"]

#: Below this share of a class's noise-free library copies labelled as that class, a full fit is advised.
MIN_TRAIN_ACCURACY = 0.8
#: A new fingerprint reconstructed this many times worse (relative L2) than the worst library one.
MAX_RECONSTRUCTION_RATIO = 2.0


@dataclass(frozen=True)
class Evidence:
    """Labelled pixels as latent Gaussians: ``mu``, ``var`` (n, latent_dim) and class names (n,)."""

    mu: np.ndarray
    var: np.ndarray
    labels: np.ndarray


def extend_library(parts: FittedParts, library: Library) -> Library:
    """The model's library plus ``library`` (preprocessed onto the model's axis); new classes last.

    Raises
    ------
    InputDataError
        ``library`` does not cover the model's energy range.
    """
    cfg, energy = parts.config, parts.energy
    if library.energy[0] > energy[0] + 1e-6 or library.energy[-1] < energy[-1] - 1e-6:
        raise InputDataError(
            f"{library.source}: covers {library.energy[0]:g}-{library.energy[-1]:g} eV, the model needs "
            f"{energy[0]:g}-{energy[-1]:g} eV"
        )
    added = library_on_axis(library, energy, cfg.preprocess, cfg.library.measured)
    return Library(
        np.concatenate([parts.library.spectra, added.spectra]),
        energy,
        np.concatenate([parts.library.labels.astype(str), added.labels.astype(str)]),
        f"{parts.library.source} + {library.source}",
    )  # the model's library has two classes or more: the default min_classes holds


@torch.no_grad()
def _separation(
    parts: FittedParts, gp: GPPosterior, lib_x: torch.Tensor, lib_y: torch.Tensor, classes: np.ndarray
) -> dict[str, float]:
    """Per class, the share of its noise-free augmented library copies (pure: no mixtures, whose label
    is a draw) that the GP labels as that class at the raw encoder's latent means: whether the frozen
    latent separates the classes, apart from the counting noise that the training draws may carry (and
    the data's pixels do too)."""
    loc = map_chunks(parts.raw_encoder, lib_x, chunk=CHUNK)[0]
    label = predict_fast(gp, loc, torch.zeros_like(loc)).proba.argmax(-1)
    return {str(c): round(float((label[lib_y == i] == i).float().mean()), 4) for i, c in enumerate(classes)}


@torch.no_grad()
def _reconstruction_error(parts: FittedParts, spectra: np.ndarray, device: torch.device) -> np.ndarray:
    """L2 error of the VAE's reconstruction (decoder at the encoder's mean) per spectrum, relative to
    its norm, or to a tenth of the median norm for weak spectra (an all-zero class has no norm)."""
    x = torch.as_tensor(spectra, dtype=torch.float32, device=device)
    rec = map_chunks(lambda batch: parts.vae.decoder(parts.vae.encoder(batch)[0]), x, chunk=CHUNK)
    norm = x.norm(dim=-1)
    return ((rec - x).norm(dim=-1) / norm.clamp_min(0.1 * float(norm.median()) + 1e-12)).cpu().numpy()


def _stored_check(diagnostics: dict[str, Any]) -> LibraryCheck | None:
    stored = diagnostics.get("library_check")
    if not isinstance(stored, dict):
        return None
    names = [f.name for f in dataclasses.fields(LibraryCheck)]
    return LibraryCheck(**{k: stored[k] for k in names}) if set(names) <= set(stored) else None


def refit_parts(
    parts: FittedParts,
    evidence: Evidence | None,
    library: Library | None,
    device: torch.device,
    progress: bool = False,
) -> tuple[FittedParts, dict[str, Any]]:
    """A new :class:`FittedParts` with the GP (and head) refitted; and a report of the update.

    Parameters
    ----------
    parts : FittedParts
        The fitted model (its encoders are reused, not copied).
    evidence : Evidence, optional
        Labelled pixels; their class names must be in the (extended) library.
    library : Library, optional
        Fingerprints to add (:func:`extend_library`), possibly of new classes.
    device : torch.device
        Where ``parts`` live.

    Returns
    -------
    parts : FittedParts
    report : dict
        ``n_labelled``, ``new_classes``, per-class ``train_accuracy`` (the share of the class's
        noise-free library copies the updated GP labels as that class; the key keeps its earlier
        name), ``reconstruction_error`` of added fingerprints against the library's worst,
        ``advise_fit`` and its ``reasons``.

    Raises
    ------
    InputDataError
        Evidence naming a class the library does not hold.
    """
    with seeded_global_rng(parts.config.train.seed, device):  # gpytorch's initialisation: reproducible
        return _refit(parts, evidence, library, device, progress)


def _refit(
    parts: FittedParts,
    evidence: Evidence | None,
    library: Library | None,
    device: torch.device,
    progress: bool,
) -> tuple[FittedParts, dict[str, Any]]:
    cfg = parts.config
    lib = extend_library(parts, library) if library is not None else parts.library
    classes = lib.classes
    new_classes = [str(c) for c in classes[len(parts.classes) :]]
    if evidence is not None:
        unknown = sorted(set(map(str, evidence.labels)) - set(map(str, classes)))
        if unknown:
            raise InputDataError(
                f"labels name {', '.join(map(repr, unknown))}, not in the library ({', '.join(classes)})"
            )
    seed = cfg.train.seed
    nuisance = with_estimates(cfg.nuisance, parts.diagnostics.get("nuisance_estimate", {}))
    copies = gp_copies(lib, nuisance, cfg.model.samples_per_fingerprint, seed)  # as fit's GP saw
    # a labelled pixel weighs as much as one of the encoders' library copies
    per_spectrum = math.ceil(cfg.model.samples_per_fingerprint / (1 + nuisance.n_augment))

    def t(a: np.ndarray, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.as_tensor(a, dtype=dtype, device=device)

    kind = str(parts.diagnostics.get("gp_latents", "clean"))  # saved without the record: clean latents
    scaler = OODScaler.stored(parts.diagnostics.get("ood"))  # holds the data's noise model
    noise = None if scaler is None else (scaler.alpha, scaler.beta)
    copies_x, copies_y = t(copies.spectra), t(copies.class_index, torch.int64)
    z, y = gp_training_set(kind, parts.vae.encoder, parts.raw_encoder, copies_x, copies_y, noise, 1, seed)
    n_labelled = 0
    if evidence is not None and len(evidence.labels):
        lookup = {str(c): i for i, c in enumerate(classes)}
        index = t(np.array([lookup[str(c)] for c in evidence.labels]), torch.int64)
        generator = torch.Generator(device).manual_seed(seed + 5)
        mu, sd = t(evidence.mu), t(evidence.var).clamp_min(0).sqrt()
        eps = torch.randn(per_spectrum, *mu.shape, generator=generator, device=device)
        z = torch.cat([z, (mu + sd * eps).reshape(-1, mu.shape[-1])])
        y = torch.cat([y, index.repeat(per_spectrum)])
        n_labelled = len(evidence.labels)
    gp = GPPosterior.from_model(train_gp(z, y, len(classes), cfg.model, cfg.train, progress)[0])
    if nuisance.mix_share == 0:  # the training copies are pure already (the default)
        pure_x, pure_y = copies_x, copies_y
    else:
        unmixed = dataclasses.replace(nuisance, mix_share=0.0)
        pure = gp_copies(lib, unmixed, cfg.model.samples_per_fingerprint, seed)
        pure_x, pure_y = t(pure.spectra), t(pure.class_index, torch.int64)
    accuracy = _separation(parts, gp, pure_x, pure_y, classes)
    check, fallback = _stored_check(parts.diagnostics), spectral_prior(parts.diagnostics) is not None
    if check is not None and fallback:  # the same encoders: the latent still fails, the spectra label
        gp = temper(gp, check)
    reasons = [
        f"class {c}: only {a:.0%} of its noise-free library copies get its label"
        for c, a in accuracy.items()
        if a < MIN_TRAIN_ACCURACY and not fallback
    ]
    report: dict[str, Any] = {"n_labelled": n_labelled, "new_classes": new_classes}
    report["labels_from"] = labels_from(parts.diagnostics)
    report["train_accuracy"] = accuracy
    if library is not None:
        errors = _reconstruction_error(parts, lib.spectra, device)
        old, added = errors[: len(parts.library.labels)], errors[len(parts.library.labels) :]
        report["reconstruction_error"] = {"library_max": round(float(old.max()), 4),
                                          "added": [round(float(e), 4) for e in added]}  # fmt: skip
        if added.size and added.max() > MAX_RECONSTRUCTION_RATIO * max(float(old.max()), 0.02):
            reasons.append(
                f"the VAE reconstructs an added fingerprint with error {added.max():.2f}, against at most "
                f"{old.max():.2f} for the library it was trained on"
            )
    report["advise_fit"], report["reasons"] = bool(reasons), reasons

    head = parts.head
    if head is not None:  # distil again on noisy library copies at the data's noise level
        noise_sd = float(parts.diagnostics.get("nuisance_estimate", {}).get("noise_sd", 0.0))
        lib_x = t(augment_library(lib, nuisance, np.random.default_rng(seed)).spectra)  # the encoders' copies
        generator = torch.Generator(device).manual_seed(seed + 6)
        noisy = lib_x + noise_sd * torch.randn(lib_x.shape, generator=generator, device=device)
        head, head_report = distil_head(parts.raw_encoder, gp, noisy, cfg.head, seed)
        report["head"] = head_report
    diagnostics = {**parts.diagnostics, "update": report}
    updated = FittedParts(
        cfg, parts.vae, parts.raw_encoder, gp, head, classes, parts.energy, lib, diagnostics
    )
    return updated, report
