"""Reference classifiers that eelsprint must beat on the same data.

Each ``*_proba`` baseline returns class probabilities of shape
``(n_spectra, n_classes)`` in the order of ``library.classes``. Methods that
only give a label return it one-hot (probability 1 for the label, 0 for the
rest); scores such as the negative log-likelihood then clip the zero
probabilities at 1e-12, so every error costs 27.6 nats.

* :func:`nearest_fingerprint` - least-squares nearest library spectrum.
* :func:`pca_nearest_proba` - the same after PCA denoising of the spectra.
* :func:`peak_ratio_proba` - the paper's conventional method: the ratio of the
  intensities in a shoulder and a peak window of PCA-denoised spectra,
  classified by the nearest library ratio.
* :func:`pca_gp_proba` - the paper's classifier without the VAE: scikit-learn's
  ``GaussianProcessClassifier()`` trained on the PCA projections of the
  (nuisance-augmented) library and applied to the data's projections.
* :func:`mlls_fit` - what HyperSpy users do: a multiple linear least-squares
  fit of the class references (exspy ``ScalableFixedPattern`` components with a
  linear ``multifit``), the class of the largest fitted scale.
* :func:`supervised_ceiling` - not a competitor but a ceiling: a classifier
  trained on the true labels of half the pixels, scored on the other half.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.signal import find_peaks
from sklearn.decomposition import PCA
from sklearn.gaussian_process import GaussianProcessClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from eelsprint.config import NuisanceConfig
from eelsprint.data.augment import augment_library
from eelsprint.data.preprocess import pca_denoise
from eelsprint.data.spectra import Library

__all__ = [
    "DESCRIPTIONS",
    "RatioWindows",
    "nearest_fingerprint",
    "one_hot",
    "pca_gp_proba",
    "pca_nearest_proba",
    "peak_ratio_proba",
    "ratio_windows",
    "run_baselines",
]

#: Baseline name -> what it is, for reports.
DESCRIPTIONS = {
    "nearest_fingerprint": "nearest library spectrum (least squares) on the raw spectra; one-hot",
    "pca_nearest_fingerprint": "PCA denoising, then nearest library spectrum; one-hot",
    "peak_ratio": "shoulder/peak intensity ratio of PCA-denoised spectra, nearest library ratio; one-hot",
    "pca_gp": "PCA latent + scikit-learn GaussianProcessClassifier() trained on library projections",
}


def nearest_fingerprint(x: np.ndarray, library: Library) -> np.ndarray:
    """Class index of the library spectrum closest to each spectrum (least squares).

    Parameters
    ----------
    x : ndarray of shape (n_spectra, n_channels)
        Spectra on the library's energy axis.
    library : Library

    Returns
    -------
    ndarray of int, shape (n_spectra,)
        Index into ``library.classes``.
    """
    lib = library.spectra
    d2 = (x**2).sum(-1, keepdims=True) - 2 * x @ lib.T + (lib**2).sum(-1)
    return library.class_index[d2.argmin(-1)]


def one_hot(index: np.ndarray, n_classes: int) -> np.ndarray:
    """Probabilities 1 at ``index`` and 0 elsewhere, shape (n, n_classes)."""
    return np.eye(n_classes)[index]


def pca_nearest_proba(x: np.ndarray, library: Library, n_components: int = 10, seed: int = 0) -> np.ndarray:
    """Nearest fingerprint after PCA denoising (``n_components`` kept), one-hot (n, n_classes)."""
    return one_hot(nearest_fingerprint(pca_denoise(x, n_components, seed), library), len(library.classes))


@dataclass(frozen=True)
class RatioWindows:
    """Energy windows (eV) of the peak/shoulder-ratio method."""

    peak: tuple[float, float]
    shoulder: tuple[float, float]


def ratio_windows(library: Library, half_width_ev: float = 1.0) -> RatioWindows:
    """Pick the peak and shoulder windows from the library.

    The peak window is centred on the most prominent maximum of the library's
    mean spectrum. Among its other maxima, the shoulder is the one whose
    shoulder/peak ratio differs most between the classes (largest coefficient
    of variation of the class-mean ratios); 4 eV below the peak when there is no
    other maximum. Each window is ``2 * half_width_ev`` wide.
    """
    energy = library.energy
    found, props = find_peaks(library.spectra.mean(0), prominence=0.0)
    if not found.size:
        found, props = np.array([int(library.spectra.mean(0).argmax())]), {"prominences": np.ones(1)}
    order = found[np.argsort(props["prominences"])[::-1]]

    def window(centre: float) -> tuple[float, float]:
        return (centre - half_width_ev, centre + half_width_ev)

    peak = window(float(energy[order[0]]))
    candidates = [window(float(energy[i])) for i in order[1:]] or [window(float(energy[order[0]]) - 4.0)]
    lib_peak = _window_mean(library.spectra, energy, peak)
    edge = lib_peak > 1e-9 * max(float(np.abs(library.spectra).max()), 1e-300)

    def spread(shoulder: tuple[float, float]) -> float:
        ratio = _window_mean(library.spectra[edge], energy, shoulder) / lib_peak[edge]
        index = library.class_index[edge]
        means = np.array([ratio[index == c].mean() for c in np.unique(index)])
        return float(means.std() / max(abs(means.mean()), 1e-12))

    return RatioWindows(peak, max(candidates, key=spread))


def _window_mean(x: np.ndarray, energy: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """Mean intensity in ``window`` (the nearest channel when the window holds none), shape (n,)."""
    inside = (energy >= window[0]) & (energy <= window[1])
    if not inside.any():
        inside[np.abs(energy - 0.5 * (window[0] + window[1])).argmin()] = True
    return x[:, inside].mean(-1)


def peak_ratio_proba(
    x: np.ndarray,
    library: Library,
    n_components: int = 10,
    windows: RatioWindows | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The paper's conventional method: shoulder/peak intensity ratio, nearest library ratio.

    Spectra are PCA-denoised first. Library spectra with no intensity in the
    peak window (e.g. a composition with no edge) have no ratio; a spectrum whose
    peak intensity is below half the weakest edge-bearing library peak is given
    their class instead.

    Parameters
    ----------
    x : ndarray of shape (n_spectra, n_channels)
        Spectra on the library's energy axis.
    library : Library
    n_components : int
        Principal components kept for denoising.
    windows : RatioWindows, optional
        Default: :func:`ratio_windows` of the library.
    seed : int
        Seed of the randomised PCA.

    Returns
    -------
    ndarray of shape (n_spectra, n_classes)
        One-hot probabilities.
    """
    windows = windows or ratio_windows(library)
    denoised = pca_denoise(x, n_components, seed)
    lib_peak = _window_mean(library.spectra, library.energy, windows.peak)
    lib_shoulder = _window_mean(library.spectra, library.energy, windows.shoulder)
    has_edge = lib_peak > 1e-9 * max(float(np.abs(library.spectra).max()), 1e-300)
    lib_ratio = lib_shoulder[has_edge] / lib_peak[has_edge]
    peak = _window_mean(denoised, library.energy, windows.peak)
    ratio = _window_mean(denoised, library.energy, windows.shoulder) / np.where(peak > 0, peak, np.inf)
    index = library.class_index[has_edge][np.abs(ratio[:, None] - lib_ratio[None, :]).argmin(-1)]
    if not has_edge.all():
        no_edge_class = library.class_index[~has_edge][0]
        index = np.where(peak < 0.5 * lib_peak[has_edge].min(), no_edge_class, index)
    return one_hot(index, len(library.classes))


def pca_gp_proba(
    x: np.ndarray,
    library: Library,
    n_components: int = 8,
    nuisance: NuisanceConfig | None = None,
    seed: int = 0,
) -> np.ndarray:
    """The paper's classifier without the VAE: a GP classifier on principal components.

    PCA is fitted on the data (as the VAE is); the library, with the same
    nuisance augmentation eelsprint trains on, is projected and used to train
    scikit-learn's ``GaussianProcessClassifier()`` (default kernel
    ``1.0 * RBF(1.0)``, hyperparameters fitted, one-vs-rest).

    Parameters
    ----------
    x : ndarray of shape (n_spectra, n_channels)
        Spectra on the library's energy axis.
    library : Library
    n_components : int
        Principal components (clipped to the data's size).
    nuisance : NuisanceConfig, optional
        Augmentation of the library; ``NuisanceConfig(mix_share=0.0)`` when omitted.
    seed : int
        Seed of the PCA and of the augmentation.

    Returns
    -------
    ndarray of shape (n_spectra, n_classes)
    """
    k = min(n_components, *x.shape)
    pca = PCA(n_components=k, random_state=seed).fit(x)
    pure = NuisanceConfig(mix_share=0.0)  # the baseline as measured: pure augmented copies
    augmented = augment_library(library, nuisance or pure, np.random.default_rng(seed))
    gpc = GaussianProcessClassifier(random_state=seed)
    gpc.fit(pca.transform(augmented.spectra), augmented.class_index)
    proba = np.zeros((len(x), len(library.classes)))
    proba[:, gpc.classes_] = gpc.predict_proba(pca.transform(x))
    return proba


def mlls_fit(x: np.ndarray, library: Library) -> tuple[np.ndarray, np.ndarray]:
    """Multiple linear least squares: the scales of the class-mean references that best fit each spectrum.

    The same fit as exspy's ``ScalableFixedPattern`` components (one per class,
    the class's mean library spectrum) with a linear ``multifit`` (checked equal
    to HyperSpy's to 1e-12), done for all spectra at once with the pseudo-inverse.
    An all-zero reference keeps scale 0.

    Parameters
    ----------
    x : ndarray of shape (n_spectra, n_channels)
        Spectra on the library's energy axis.
    library : Library

    Returns
    -------
    scales : ndarray of shape (n_spectra, n_classes)
        Fitted scales; ``argmax`` is the MLLS label.
    residual : ndarray of shape (n_spectra,)
        Residual sum of squares of the fit.
    """
    references = library.class_means()
    scales = x @ np.linalg.pinv(references)
    return scales, ((x - scales @ references) ** 2).sum(-1)


def supervised_ceiling(
    x: np.ndarray, labels: np.ndarray, n_classes: int, *, n_components: int = 20, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A classifier trained on the true labels of half the pixels, scored on the other half.

    PCA of all spectra (label-free), then a multinomial logistic regression on the
    standardised components, trained on a random half of the library pixels
    (``labels >= 0``).

    Parameters
    ----------
    x : ndarray of shape (n_spectra, n_channels)
    labels : ndarray of int, shape (n_spectra,)
        True class, -1 for pixels in no library class (left out).
    n_classes : int
    n_components : int
        Principal components (clipped to the data's size).
    seed : int
        Seed of the split and the PCA.

    Returns
    -------
    proba : ndarray of shape (n_test, n_classes)
    test : ndarray of int, shape (n_test,)
        Indices into ``x`` of the scored half.
    """
    rng = np.random.default_rng(seed)
    known = rng.permutation(np.flatnonzero(labels >= 0))
    train, test = known[: len(known) // 2], known[len(known) // 2 :]
    features = PCA(n_components=min(n_components, *x.shape), random_state=seed).fit_transform(x)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    model.fit(features[train], labels[train])
    proba = np.zeros((len(test), n_classes))
    proba[:, model.classes_] = model.predict_proba(features[test])
    return proba, test


def run_baselines(
    x: np.ndarray,
    library: Library,
    *,
    n_components: int = 10,
    latent_dim: int = 8,
    nuisance: NuisanceConfig | None = None,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Every baseline's class probabilities on ``x`` (n_spectra, n_channels), keyed as :data:`DESCRIPTIONS`.

    ``n_components`` is used for PCA denoising, ``latent_dim`` for the PCA latent
    of :func:`pca_gp_proba` (the size of eelsprint's latent, for a fair comparison).
    """
    n_classes = len(library.classes)
    return {
        "nearest_fingerprint": one_hot(nearest_fingerprint(x, library), n_classes),
        "pca_nearest_fingerprint": pca_nearest_proba(x, library, n_components, seed),
        "peak_ratio": peak_ratio_proba(x, library, n_components, seed=seed),
        "pca_gp": pca_gp_proba(x, library, latent_dim, nuisance, seed),
    }
