"""What a fitted model knows about its own library: self-consistency and latent information.

KL to the prior does not show that the latent carries information (a shrunken
variance around a constant mean has a large KL). Two direct measures instead:

* **self-consistency**: every library spectrum, given the data's noise level,
  is classified by the full model (raw encoder + GP); the share that gets its
  own class. The same noisy copies classified by nearest fingerprint on the raw
  spectra say what the spectra themselves allow.
* **latent accuracy**: a linear discriminant fitted on the raw encoder's latent
  means of noisy augmented library copies, scored on a second, independently
  augmented set; the same on the data's PCA scores (the paper's representation).
  No data label is used: the library is the only labelled information.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.decomposition import PCA
from sklearn.discriminant_analysis import LinearDiscriminantAnalysis

from eelsprint.config import NuisanceConfig
from eelsprint.data.augment import augment_library
from eelsprint.data.spectra import Library
from eelsprint.exceptions import RepresentationWarning
from eelsprint.inference.uncertainty import GPPosterior, predict_fast
from eelsprint.models.vae import ConvEncoder

__all__ = ["MIN_COPIES", "LibraryCheck", "check_library", "noisy_copies", "temper", "warn_if_inseparable"]

#: The representation "cannot separate" when it trails the raw spectra (or PCA) by more than this.
MARGIN = 0.1
#: Fewest noisy copies of the library in all for the self-consistency: the share's sampling sd
#: stays near 0.02, well under :data:`MARGIN` (16 copies of a 3-spectrum library, 48 in all, gave
#: nearest fingerprint 0.77 in one training seed and 0.92 in the next on the same Cu series).
MIN_COPIES = 512
#: Prior variance of the latent functions of a GP that fails its own library (see :func:`temper`).
PRIOR_VARIANCE = 4.0


@dataclass(frozen=True)
class LibraryCheck:
    """Shares in [0, 1]; ``per_class`` maps each label to its own self-consistency."""

    self_consistency: float
    per_class: dict[str, float]
    nearest_self_consistency: float
    latent_accuracy: float
    pca_accuracy: float

    def to_dict(self) -> dict[str, object]:
        """Rounded, JSON-ready."""
        out = {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}
        out["per_class"] = {k: round(v, 4) for k, v in self.per_class.items()}
        return out

    @property
    def fails_own_library(self) -> bool:
        """The model trails nearest fingerprint on its own noisy library by more than :data:`MARGIN`."""
        return self.self_consistency < self.nearest_self_consistency - MARGIN

    def problems(self) -> list[str]:
        """Plain-language reasons the representation falls short (empty when it does not)."""
        found = []
        if self.fails_own_library:
            found.append(
                f"only {self.self_consistency:.0%} of the library's own spectra (at the data's noise) get "
                f"their own class, against {self.nearest_self_consistency:.0%} by nearest fingerprint"
            )
        if self.latent_accuracy < self.pca_accuracy - MARGIN:
            found.append(
                f"the latent separates held-out library copies less well ({self.latent_accuracy:.0%}) "
                f"than PCA of the data ({self.pca_accuracy:.0%})"
            )
        return found


def noisy_copies(
    spectra: np.ndarray, noise_sd: np.ndarray, copies: int, rng: np.random.Generator
) -> np.ndarray:
    """``copies`` noisy versions of each spectrum ``(N, C)`` -> ``(copies * N, C)``, spectrum-major."""
    base = np.repeat(spectra, copies, axis=0)
    return base + noise_sd[None, :] * rng.standard_normal(base.shape)


@torch.no_grad()
def _latent_means(encoder: ConvEncoder, x: np.ndarray) -> np.ndarray:
    device = next(encoder.parameters()).device
    return encoder(torch.as_tensor(x, dtype=torch.float32, device=device))[0].cpu().numpy()


def _probe_accuracy(train: np.ndarray, y_train: np.ndarray, test: np.ndarray, y_test: np.ndarray) -> float:
    lda = LinearDiscriminantAnalysis(solver="lsqr", shrinkage="auto").fit(train, y_train)
    return float((lda.predict(test) == y_test).mean())


def check_library(
    raw: ConvEncoder,
    gp: GPPosterior,
    library: Library,
    nuisance: NuisanceConfig,
    data: np.ndarray,
    noise_sd: np.ndarray,
    pca_components: int,
    seed: int = 0,
    copies: int | None = None,
) -> LibraryCheck:
    """Measure self-consistency and latent information of a fitted model (see the module's notes).

    Parameters
    ----------
    raw : ConvEncoder
        The fitted raw encoder (in eval mode).
    gp : GPPosterior
    library : Library
        The clean library on the model's axis.
    nuisance : NuisanceConfig
        The augmentation; two independent augmented sets (at least 16 pure copies per
        spectrum, no mixtures) train and score the linear probes.
    data : ndarray of shape (n_spectra, n_channels)
        The preprocessed training spectra (for the PCA baseline).
    noise_sd : ndarray of shape (n_channels,)
        The data's noise level per channel.
    pca_components : int
    seed : int
    copies : int, optional
        Noisy copies per library spectrum for the self-consistency; by default at least 16
        and :data:`MIN_COPIES` in all.
    """
    rng = np.random.default_rng(seed)
    if copies is None:
        copies = max(16, -(-MIN_COPIES // len(library.spectra)))
    own = np.repeat(library.class_index, copies)
    noisy = noisy_copies(library.spectra, noise_sd, copies, rng)
    with torch.no_grad():
        loc, scale = raw(torch.as_tensor(noisy, dtype=torch.float32, device=next(raw.parameters()).device))
        label = predict_fast(gp, loc, scale.pow(2)).proba.argmax(-1).cpu().numpy()
    hit = label == own
    distance = ((noisy[:, None, :] - library.spectra[None]) ** 2).sum(-1)
    nearest = library.class_index[distance.argmin(1)] == own
    per_class = {str(c): float(hit[own == i].mean()) for i, c in enumerate(library.classes)}

    # pure copies: a mixture's label is a draw, which no representation can separate
    nuisance = dataclasses.replace(nuisance, n_augment=max(nuisance.n_augment, 16), mix_share=0.0)
    train_copies, held_copies = (augment_library(library, nuisance, rng) for _ in range(2))
    x_train = noisy_copies(train_copies.spectra, noise_sd, 1, rng)
    x_held = noisy_copies(held_copies.spectra, noise_sd, 1, rng)
    y_train, y_held = train_copies.class_index, held_copies.class_index
    latent = _probe_accuracy(_latent_means(raw, x_train), y_train, _latent_means(raw, x_held), y_held)
    pca = PCA(n_components=min(pca_components, *data.shape), random_state=seed).fit(data)
    linear = _probe_accuracy(pca.transform(x_train), y_train, pca.transform(x_held), y_held)
    return LibraryCheck(float(hit.mean()), per_class, float(nearest.mean()), latent, linear)


def temper(gp: GPPosterior, check: LibraryCheck) -> GPPosterior:
    """The GP replaced by a wide prior when the model fails its own library; else unchanged.

    The posterior is replaced by a zero-mean prior of variance :data:`PRIOR_VARIANCE`
    for every class: a latent that cannot recognise its own library keeps no say in
    the labels (they come from the spectral fallback of
    :mod:`eelsprint.inference.spectral`, the same for every training seed) and the
    prediction reports high epistemic uncertainty, never a confident constant.
    """
    if not check.fails_own_library:
        return gp
    return dataclasses.replace(
        gp,
        outputscale=torch.full_like(gp.outputscale, PRIOR_VARIANCE),
        constant=torch.zeros_like(gp.constant),
        alpha=torch.zeros_like(gp.alpha),
        cross=torch.zeros_like(gp.cross),
    )


def warn_if_inseparable(
    check: LibraryCheck, source: str, choice: Mapping[str, float | bool] | None = None
) -> None:
    """Warn with :class:`~eelsprint.exceptions.RepresentationWarning` for each problem found.

    ``choice`` is the record of :func:`eelsprint.inference.spectral.choose_fallback` (None
    when the model passed): the warning then says which model labels the data and why.
    """
    outcome = ""
    if choice is not None:
        model, fallback = choice["model_nll"], choice["fallback_nll"]
        outcome = (
            f"; labels come from the spectral fallback (NLL on noisy library copies with the data's "
            f"nuisance {fallback:.2f}, latent {model:.2f})"
            if choice["used"]
            else f"; the latent model is kept: with the data's nuisance it beats the spectral fallback "
            f"on noisy library copies (NLL {model:.2f} vs {fallback:.2f})"
        )
    for problem in check.problems():
        warnings.warn(f"{source}: {problem}{outcome}", RepresentationWarning, stacklevel=3)
