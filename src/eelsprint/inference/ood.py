"""Out-of-library score: how well the library explains a pixel under the data's noise model.

A naive least-squares residual fails at low dose: counting noise dwarfs the
difference a foreign spectrum makes. Here every pixel ``x`` is fitted by each
fingerprint ``l_k`` with a free scale, offset, tilt and first-order energy shift,

    x ~ a l_k + b + c t + d l_k'        (t: a ramp from -1 to 1 over the window)

by weighted least squares with the data's own heteroscedastic noise model,
``var = alpha + beta * |s|`` at the fingerprint's level ``s`` (counting noise
grows with the signal, read noise does not), estimated from the unlabelled
data and their PCA-denoised twins (:func:`noise_model`). The best fingerprint is
then tested for a peak or an edge it does not explain
(:func:`eelsprint.inference.features.feature_scan`): a matched filter per
possible feature, weighted by how often the data use it, far more sensitive
than the fit's reduced chi-square, which averages a local change over every
channel. The scan reads every pixel against its own noise level (the median of
its squared weighted residual: pixels differ, after edge normalisation by up to
ten times in variance on the Cu L2,3 series, and one model-wide level lets noisy
library pixels outscore quiet foreign ones), with the energy shift and broadening
as nuisance terms whose priors are the library augmentation's ranges
(:class:`~eelsprint.inference.features.NuisancePrior`). ``ood_score`` is the larger of two
robust standard scores (median, MAD over the training pixels): the scan's log
odds, and the log of the pixel's noise scale, which flags a pixel that no
fingerprint explains anywhere (noise alone, background without an edge). The
weights and the standardisations are learnt from the data without labels. The
GP's epistemic term stays a variable of its own: on the realism benchmark it is
near chance as an out-of-library score, and taking the larger of the scan's and
its standard scores lowered the scan's AUROC (MXene DFT library: foreign edge
0.86 -> 0.82, extra feature 0.91 -> 0.84).

The same fits estimate the nuisance the data carry (:func:`estimate_nuisance`).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from eelsprint.data.preprocess import pca_denoise
from eelsprint.exceptions import DoseShiftWarning
from eelsprint.inference.features import (
    NO_NUISANCE,
    FeaturePrior,
    NuisancePrior,
    Scan,
    atom_tests,
    feature_scan,
    library_design,
)

__all__ = [
    "LibraryFit",
    "OODScaler",
    "estimate_nuisance",
    "fit_library",
    "learn_ood",
    "library_features",
    "noise_model",
    "ood_score",
    "pixel_scores",
    "warn_dose_shift",
    "with_noise",
]

#: ``noise_vs_fit`` outside [1 / DOSE_SHIFT, DOSE_SHIFT] warns: a third or three times the fitted dose
#: moved the mean confidence 0.015-0.22 away from the accuracy (``evaluation/results/dose_shift.md``).
DOSE_SHIFT = 2.0
_DOSE_SHIFT_PIXELS = 10  # fewer pixels: their median noise says too little
_MAD = 1.4826  # MAD -> standard deviation of a Gaussian
_PRIOR_PIXELS = 20_000  # the scan's feature weights are learnt on at most this many pixels


def noise_model(x: np.ndarray, smooth: np.ndarray) -> tuple[float, float]:
    """``(alpha, beta)`` of ``var = alpha + beta * |smooth|``, least squares on the squared residuals.

    Parameters
    ----------
    x, smooth : ndarray of shape (n_spectra, n_channels)
        Spectra and their denoised twins.
    """
    level = np.abs(smooth).ravel()
    r2 = ((x - smooth) ** 2).ravel()
    design = np.stack([np.ones_like(level), level], 1)
    coef = np.linalg.lstsq(design, r2, rcond=None)[0]
    floor = 1e-6 * float(r2.mean()) + 1e-30
    return max(float(coef[0]), floor), max(float(coef[1]), 0.0)


def with_noise(spectra: np.ndarray, noise: tuple[float, float], rng: np.random.Generator) -> np.ndarray:
    """``spectra`` plus Gaussian noise of variance ``alpha + beta * |spectra|`` (:func:`noise_model`)."""
    sd = np.sqrt(noise[0] + noise[1] * np.abs(spectra))
    return spectra + sd * rng.standard_normal(spectra.shape)


@dataclass(frozen=True)
class LibraryFit:
    """Best-fingerprint weighted fit of every pixel (arrays of shape (n_spectra,))."""

    chi2: np.ndarray  # reduced chi-square of the best fingerprint
    best: np.ndarray  # its index into the library's spectra
    nearest: np.ndarray  # index of the nearest fingerprint by plain distance
    # The nuisance terms of the nearest fingerprint (plain distance, no free scale): with a free
    # scale an intensity-coded library fits any pixel with any fingerprint, the nearest one keeps a ~ 1.
    scale: np.ndarray  # a
    offset: np.ndarray  # b
    tilt: np.ndarray  # c
    shift_ev: np.ndarray  # -d / a: the energy shift that the derivative term absorbs
    # Their variances from the noise alone (the diagonal of the weighted fit's covariance, and
    # var(d) / a^2 for the shift): counting noise widens the coefficients' spread by this much.
    noise_var: np.ndarray  # (n_spectra, 4): scale, offset, tilt, shift


def fit_library(
    x: np.ndarray, library: np.ndarray, energy: np.ndarray, noise: tuple[float, float]
) -> LibraryFit:
    """Weighted fit of each pixel by each fingerprint (scale, offset, tilt, shift); keep the best.

    The weights are the noise model's at fingerprint ``k``'s level (the variance
    the hypothesis "this pixel is fingerprint k" predicts), so they do not
    depend on the pixel's own noise and one small solve per fingerprint serves
    every pixel.

    Parameters
    ----------
    x : ndarray of shape (n_spectra, n_channels)
    library : ndarray of shape (n_fingerprints, n_channels)
    energy : ndarray of shape (n_channels,)
    noise : (alpha, beta)
        From :func:`noise_model`.
    """
    n_channels = x.shape[-1]
    design = library_design(library, energy)  # (K, C, 4)
    weight = 1.0 / (noise[0] + noise[1] * np.abs(library))  # (K, C)
    gram = np.einsum("kc,kci,kcj->kij", weight, design, design)  # (K, 4, 4)
    gram += 1e-9 * np.trace(gram, axis1=-2, axis2=-1)[:, None, None] * np.eye(4)
    weighted = (weight[..., None] * design).transpose(1, 0, 2).reshape(n_channels, -1)  # (C, K*4)
    rhs = (x @ weighted).reshape(len(x), len(library), 4)  # (N, K, 4)
    covariance = np.linalg.inv(gram)  # of the coefficients, when the noise model holds
    coef = np.einsum("kij,nkj->nki", covariance, rhs)  # (N, K, 4); gram is symmetric
    # Weighted residual sum of squares of the least-squares solution: x'Wx - coef'rhs.
    rss = np.maximum(x**2 @ weight.T - (coef * rhs).sum(-1), 0.0)  # (N, K)
    chi2 = rss / max(n_channels - 4, 1)
    best = chi2.argmin(1)
    rows = np.arange(len(x))
    nearest = ((library**2).sum(1)[None, :] - 2 * x @ library.T).argmin(1)
    a, b, c, d = (coef[rows, nearest, i] for i in range(4))
    safe_a = np.where(np.abs(a) > 1e-12, a, 1e-12)
    noise_var = np.diagonal(covariance, axis1=1, axis2=2)[nearest].copy()  # (N, 4)
    noise_var[:, 3] /= safe_a**2
    return LibraryFit(chi2[rows, best], best, nearest, a, b, c, -d / safe_a, noise_var)


def _robust(values: np.ndarray) -> tuple[float, float]:
    centre = float(np.median(values))
    spread = _MAD * float(np.median(np.abs(values - centre)))
    return centre, max(spread, 1e-6 * max(abs(centre), 1e-12), 1e-12)


@dataclass(frozen=True)
class OODScaler:
    """The noise model, the scan's learnt feature weights, and the robust location and scale of
    the scan's log odds and of the pixels' log noise scales."""

    alpha: float
    beta: float
    feature_median: float
    feature_spread: float
    prior: FeaturePrior
    noise_median: float
    noise_spread: float
    nuisance: NuisancePrior  # the priors of the scan's shift and broadening terms

    @classmethod
    def learn(
        cls, scan: Scan, noise: tuple[float, float], prior: FeaturePrior, nuisance: NuisancePrior
    ) -> OODScaler:
        """Standardisation learnt from the unlabelled training pixels' feature scan."""
        return cls(noise[0], noise[1], *_robust(scan.log_odds), prior, *_robust(scan.log_noise), nuisance)

    @classmethod
    def stored(cls, values: dict[str, Any] | None) -> OODScaler | None:
        """The scaler a model stored; None when it has none or one of an older score (a residual
        score, or a feature scan without the pixels' own noise scales and the nuisance priors)."""
        if values is None or "broaden_sd" not in values:
            return None
        weights = tuple(float(v) for v in values["feature_log_weights"])
        prior = FeaturePrior(float(values["feature_log_null"]), weights)
        a, b, median, spread = (
            float(values[k]) for k in ("alpha", "beta", "feature_median", "feature_spread")
        )
        noise_median, noise_spread = float(values["noise_median"]), float(values["noise_spread"])
        nuisance = NuisancePrior(float(values["shift_sd"]), float(values["broaden_sd"]))
        return cls(a, b, median, spread, prior, noise_median, noise_spread, nuisance)

    def noise_vs_fit(self, scan: Scan) -> float:
        """The scanned pixels' median noise variance relative to the training pixels' (1 at the
        fitted dose; about 0.1 at ten times the dose, 10 at a tenth)."""
        return float(np.exp(np.median(scan.log_noise) - self.noise_median))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready (stored in the model's diagnostics)."""
        return {
            "alpha": float(self.alpha),
            "beta": float(self.beta),
            "feature_median": float(self.feature_median),
            "feature_spread": float(self.feature_spread),
            "feature_log_null": self.prior.log_null,
            "feature_log_weights": list(self.prior.log_weights),
            "noise_median": float(self.noise_median),
            "noise_spread": float(self.noise_spread),
            "shift_sd": float(self.nuisance.shift_sd),
            "broaden_sd": float(self.nuisance.broaden_sd),
        }


def ood_score(scan: Scan, scaler: OODScaler) -> np.ndarray:
    """The larger of the scan's and the noise scale's robust standard scores, (n_spectra,).

    About 0 for typical pixels, > 3 unusual: a feature the best fingerprint does not
    explain, or noise far above the typical pixel's (a pixel no fingerprint fits anywhere).
    """
    feature = (scan.log_odds - scaler.feature_median) / scaler.feature_spread
    noise = (scan.log_noise - scaler.noise_median) / scaler.noise_spread
    return np.maximum(feature, noise)


def estimate_nuisance(fit: LibraryFit, library: np.ndarray, noise: tuple[float, float]) -> dict[str, float]:
    """Nuisance ranges the data show, in :class:`~eelsprint.config.NuisanceConfig`'s units.

    Robust spreads of the nearest fingerprints' fitted coefficients, less the spread
    that counting noise alone gives them (the median of their noise variances,
    :attr:`LibraryFit.noise_var`): at low dose the raw spread is mostly noise.
    ``scale_sd`` is the normalisation scatter; ``shift_ev`` and ``background_tilt``
    are the half-widths of uniform ranges with the same spread (``sqrt(3)``
    standard deviations), the tilt and offset relative to the library's largest
    intensity; ``noise_sd`` the typical noise standard deviation at the library's
    mean level. Scale and shift come from the pixels whose nearest fingerprint is
    not (near) zero.
    """
    peak = float(np.abs(library).max()) or 1.0
    log_chi2 = np.log(fit.chi2)
    centre, spread = _robust(log_chi2)
    explained = log_chi2 <= centre + 3 * spread  # a class missing from the library is not nuisance
    norms = np.abs(library).max(1)
    shaped = explained & (norms[fit.nearest] > 0.1 * peak)  # a near-zero fingerprint has no scale or shift
    if not shaped.any():
        shaped = explained
    scale_centre = float(np.median(fit.scale[shaped])) or 1.0
    noise_var = np.median(fit.noise_var[shaped], axis=0)
    scale = _beyond_noise(fit.scale[shaped] / scale_centre, noise_var[0] / scale_centre**2)
    shift = _beyond_noise(fit.shift_ev[shaped], noise_var[3])
    offset = _beyond_noise(fit.offset[explained] / peak, np.median(fit.noise_var[explained, 1]) / peak**2)
    tilt = _beyond_noise(fit.tilt[explained] / peak, np.median(fit.noise_var[explained, 2]) / peak**2)
    return {
        "scale_sd": round(scale, 4),
        "shift_ev": round(float(np.sqrt(3) * shift), 4),
        "background_tilt": round(float(np.sqrt(3) * max(offset, tilt)), 4),
        "noise_sd": round(float(np.sqrt(noise[0] + noise[1] * np.abs(library).mean())), 6),
    }


def _beyond_noise(values: np.ndarray, noise_var: float) -> float:
    """The robust spread of ``values`` with the noise's variance taken out (0 when noise explains it)."""
    spread = _robust(values)[1]
    return float(np.sqrt(max(spread**2 - float(noise_var), 0.0)))


def library_features(
    x: np.ndarray,
    library: np.ndarray,
    energy: np.ndarray,
    noise: tuple[float, float],
    nuisance: NuisancePrior = NO_NUISANCE,
    prior: FeaturePrior | None = None,
    seed: int = 0,
    fit: LibraryFit | None = None,
) -> tuple[LibraryFit, Scan, FeaturePrior]:
    """The library fit of pixels ``x``, its feature scan and the scan's weights.

    ``nuisance`` holds the priors of the scan's shift and broadening terms
    (:func:`~eelsprint.inference.features.atom_tests`). Without ``prior`` the weights
    are learnt from ``x`` (at most 20,000 pixels, drawn with ``seed``); ``fit`` reuses
    a :func:`fit_library` of the same pixels.
    """
    fit = fit_library(x, library, energy, noise) if fit is None else fit
    if prior is None:
        rows = np.arange(len(x))
        if len(x) > _PRIOR_PIXELS:
            rows = np.sort(np.random.default_rng(seed).choice(len(x), _PRIOR_PIXELS, replace=False))
        prior = FeaturePrior.learn(atom_tests(x[rows], library, energy, noise, fit.best[rows], nuisance)[0])
    return fit, feature_scan(x, library, energy, noise, fit.best, prior, nuisance), prior


def learn_ood(
    x: np.ndarray,
    smooth: np.ndarray,
    library: np.ndarray,
    energy: np.ndarray,
    nuisance: NuisancePrior = NO_NUISANCE,
    seed: int = 0,
) -> tuple[OODScaler, dict[str, float]]:
    """From unlabelled pixels ``x`` (and their denoised twins): the OOD standardisation and the nuisance."""
    noise = noise_model(x, smooth)
    fit, scan, prior = library_features(x, library, energy, noise, nuisance, seed=seed)
    return OODScaler.learn(scan, noise, prior, nuisance), estimate_nuisance(fit, library, noise)


def warn_dose_shift(noise_vs_fit: float, n_spectra: int, source: str) -> None:
    """:class:`~eelsprint.exceptions.DoseShiftWarning` when at least 10 spectra are more than
    :data:`DOSE_SHIFT` times noisier or quieter than the data the model was fitted on."""
    if n_spectra < _DOSE_SHIFT_PIXELS or 1 / DOSE_SHIFT <= noise_vs_fit <= DOSE_SHIFT:
        return
    higher = noise_vs_fit < 1
    reads = "higher dose they read underconfident" if higher else "lower dose they read overconfident"
    warnings.warn(
        f"{source}: the spectra's noise variance is {noise_vs_fit:.2g} times the fitted data's (median "
        f"of {n_spectra}); the probabilities are calibrated at the fitted dose, at this {reads} "
        "(labels are still usable); refit on data at this dose for calibrated probabilities",
        DoseShiftWarning,
        stacklevel=4,  # the caller of FingerprintClassifier.classify (through pipeline.scan_scores)
    )


def pixel_scores(
    x: np.ndarray,
    library: np.ndarray,
    energy: np.ndarray,
    stored: dict[str, Any] | None,
    pca_components: int,
    nuisance: NuisancePrior,
    seed: int,
) -> tuple[np.ndarray, float]:
    """``ood_score`` of pixels ``x`` (n_spectra, n_channels) on the model's axis, and their noise
    relative to the fitted data's (:meth:`OODScaler.noise_vs_fit`).

    Scored with the model's stored standardisation, else one learnt from ``x`` itself: models
    saved before this version's scan carry none (or an older score's); it is then learnt from
    the pixels being classified (at least 20 spectra, else NaN scores), with the ``nuisance``
    priors, and the noise ratio is NaN (nothing to compare with).
    """
    scaler = OODScaler.stored(stored)
    learnt = scaler is None
    if learnt and len(x) >= 20:
        smooth = pca_denoise(x, pca_components, seed=seed)
        scaler = learn_ood(x, smooth, library, energy, nuisance, seed)[0]
    if scaler is None:
        return np.full(len(x), np.nan), np.nan
    scan = library_features(x, library, energy, (scaler.alpha, scaler.beta), scaler.nuisance, scaler.prior)[1]
    return ood_score(scan, scaler), np.nan if learnt else scaler.noise_vs_fit(scan)
