"""Nuisance augmentation of the fingerprint library.

The library is clean theory; measured pixels carry normalisation error, energy
shift, extra broadening and a background residual. Training the classifier on
library spectra that carry the same nuisance keeps it from extrapolating on
real pixels. Ranges come from :class:`~eelsprint.config.NuisanceConfig`.
"""

from __future__ import annotations

import numpy as np

from eelsprint.config import NuisanceConfig
from eelsprint.data.preprocess import shift_spectra
from eelsprint.data.spectra import Library

__all__ = ["augment_library", "broaden"]


def broaden(data: np.ndarray, energy: np.ndarray, sigma_ev: np.ndarray) -> np.ndarray:
    """Convolve each spectrum ``(N, C)`` with a Gaussian of its own width ``sigma_ev`` (N,), via FFT.

    The spectra are padded with their edge values so that nothing wraps around.
    """
    n = data.shape[-1]
    padded = np.pad(data, ((0, 0), (n // 2, n // 2)), mode="edge")
    freq = np.fft.rfftfreq(padded.shape[-1], d=energy[1] - energy[0])
    kernel = np.exp(-2.0 * (np.pi * sigma_ev[:, None] * freq[None, :]) ** 2)
    smooth = np.fft.irfft(np.fft.rfft(padded, axis=-1) * kernel, n=padded.shape[-1], axis=-1)
    return smooth[:, n // 2 : n // 2 + n]


def augment_library(library: Library, config: NuisanceConfig, rng: np.random.Generator) -> Library:
    """The library plus ``config.n_augment`` nuisance-perturbed copies of every fingerprint.

    A share ``mix_share`` of the copies are mixed pixels first: ``w l_i + (1 - w) l_j``
    with ``l_j`` a fingerprint of another class and ``w`` uniform in ``[mix_min, 1]``
    (domain boundaries, where a probe straddles two phases), labelled ``i`` with
    probability ``w`` and ``j`` otherwise (``mix_label = "sampled"``) or always ``i``
    (``"dominant"``). Each copy then gets a multiplicative scale ``1 + N(0, scale_sd)``, a
    uniform shift in ``[-shift_ev, shift_ev]``, Gaussian broadening in
    ``[0, broaden_ev]`` and a linear background residual of at most
    ``background_tilt`` times the library's largest intensity at the window's ends.

    Returns
    -------
    Library
        ``n * (1 + n_augment)`` spectra, the originals first; each copy labelled by its
        own fingerprint (or as above, if mixed).
    """
    n, k = len(library.labels), config.n_augment
    if k == 0:
        return library
    base, copy_labels = np.repeat(library.spectra, k, axis=0), np.repeat(library.labels, k)
    if config.mix_share > 0:
        base, copy_labels = _mix(base, np.repeat(np.arange(n), k), library, config, rng)
    energy = library.energy
    shifted = shift_spectra(base, energy, rng.uniform(-config.shift_ev, config.shift_ev, n * k))
    if config.broaden_ev > 0:
        shifted = broaden(shifted, energy, rng.uniform(0.0, config.broaden_ev, n * k))
    scaled = shifted * rng.normal(1.0, config.scale_sd, (n * k, 1))
    ramp = np.linspace(-1.0, 1.0, energy.size)[None, :]
    peak = np.abs(library.spectra).max()
    offset = rng.uniform(-1, 1, (n * k, 1)) * config.background_tilt * peak
    tilt = rng.uniform(-1, 1, (n * k, 1)) * config.background_tilt * peak
    spectra = np.concatenate([library.spectra, scaled + offset + tilt * ramp])
    labels = np.concatenate([library.labels, copy_labels])
    return Library(spectra, energy, labels, library.source)


def _mix(
    base: np.ndarray, source: np.ndarray, library: Library, config: NuisanceConfig, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Replace a ``mix_share`` of ``base`` (N, C), copies of the fingerprints ``source``, by
    mixtures with a fingerprint of another class; the spectra and their labels."""
    mixed = rng.random(len(base)) < config.mix_share
    other = rng.integers(0, len(library.labels), len(base))
    mixed &= library.class_index[other] != library.class_index[source]  # same class: no mixture
    weight = rng.uniform(config.mix_min, 1.0, (len(base), 1))
    blend = weight * base + (1 - weight) * library.spectra[other]
    labels = library.labels[source]
    if config.mix_label == "sampled":  # the minor fingerprint's label with probability 1 - w
        labels = np.where(mixed & (rng.random(len(base)) > weight[:, 0]), library.labels[other], labels)
    return np.where(mixed[:, None], blend, base), labels
