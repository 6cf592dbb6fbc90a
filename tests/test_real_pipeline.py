"""Measured spectra through the whole pipeline (fit + classify), not only loading; skipped without
``../shared/data``.

* Cu L2,3: a library of the three measured references (Cu metal, Cu2O, CuO); pixels mixed from
  them (a dominant phase of 60-100 %) with counting (Poisson) noise, through crop, rebin and area
  normalisation.
* TiO2 Ti L2,3: the measured spectrum image (60 pixels) through crop, rebin, power-law background
  subtraction and area normalisation; two classes, the image as recorded and the image shifted by
  0.5 eV (a chemical shift), against a library made from the image's own preprocessed mean.

Out of the simulator's closed world: with 0.2's library-supervised latent eelsprint beats the
nearest fingerprint's accuracy on the Cu mixtures (0.1 did not: 0.607 vs 0.820) but not on the TiO2
shift (a strict xfail records the gap); it beats its NLL and ECE on both.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from eelsprint import Config, FingerprintClassifier
from eelsprint.data.io import read_spectra
from eelsprint.data.preprocess import library_on_axis, preprocess, shift_spectra
from eelsprint.data.spectra import Library, Spectra
from eelsprint.inference.metrics import accuracy, expected_calibration_error, negative_log_likelihood
from eelsprint.report.baselines import nearest_fingerprint, one_hot

from .conftest import SHARED_DATA

REAL = SHARED_DATA / "real"
pytestmark = [
    pytest.mark.skipif(not REAL.is_dir(), reason="../shared/data/real not present"),
    pytest.mark.slow,  # two small fits
]

#: A short schedule: these fits are small (hundreds of spectra).
SHORT = {"train": {"epochs": 15, "raw_epochs": 15, "gp_iterations": 200, "kl_anneal_epochs": 5}}


def _scores(proba: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    return {
        "accuracy": accuracy(proba, labels),
        "ece": expected_calibration_error(proba, labels),
        "nll": negative_log_likelihood(proba, labels),
    }


def _nearest(spectra: Spectra, library: Library, config: Config) -> np.ndarray:
    """Nearest-fingerprint one-hot probabilities on the same preprocessed spectra the model sees."""
    data = preprocess(spectra, config.preprocess)
    lib = library_on_axis(library, data.energy, config.preprocess)
    keep = (data.energy >= lib.energy[0]) & (data.energy <= lib.energy[-1])
    return one_hot(nearest_fingerprint(data.flat()[:, keep], lib), len(lib.classes))


@pytest.fixture(scope="module")
def cu_library() -> Library:
    """The three measured Cu L2,3 references on their common energy range (Cu2O's axis)."""
    names = {"Cu_metal.dm4": "Cu", "Cu2O.dm4": "Cu2O", "CuO.dm4": "CuO"}
    refs = {label: read_spectra(REAL / "cu_l23" / name) for name, label in names.items()}
    energy = refs["Cu2O"].energy
    low = max(s.energy[0] for s in refs.values())
    high = min(s.energy[-1] for s in refs.values())
    energy = energy[(energy >= low) & (energy <= high)]
    spectra = np.stack([np.interp(energy, s.energy, s.flat()[0]) for s in refs.values()])
    return Library(spectra, energy, np.array(list(refs)), source="cu_l23/*.dm4")


def _mixed_counts(library: Library, n: int, peak_counts: float, seed: int) -> tuple[Spectra, np.ndarray]:
    """``n`` spectra: a dominant reference (weight 0.6-1) plus another, Poisson counts, and labels."""
    rng = np.random.default_rng(seed)
    refs = np.clip(library.spectra, 0, None)
    refs = refs / refs.max(-1, keepdims=True)
    k = len(refs)
    labels = rng.integers(0, k, n)
    other = (labels + rng.integers(1, k, n)) % k
    weight = rng.uniform(0.6, 1.0, n)[:, None]
    mean = peak_counts * (weight * refs[labels] + (1 - weight) * refs[other])
    return Spectra(rng.poisson(mean).astype(float), library.energy, "cu mixed"), labels


@pytest.fixture(scope="module")
def cu_scores(cu_library: Library) -> tuple[dict[str, float], dict[str, float]]:
    """Fit on 600 mixed pixels, classify 600 fresh ones: (eelsprint's, nearest fingerprint's) scores."""
    torch.set_num_threads(2)
    config = Config.from_dict(
        SHORT | {"preprocess": {"window": [925.0, 965.0], "rebin": 10, "normalise": "area"}}
    )
    train, _ = _mixed_counts(cu_library, 600, peak_counts=3.0, seed=0)
    test, labels = _mixed_counts(cu_library, 600, peak_counts=3.0, seed=1)
    clf = FingerprintClassifier(config=config, progress=False).fit(train, cu_library)
    assert list(clf.classes_) == ["Cu", "Cu2O", "CuO"] and clf.energy_.size == 133
    ours = _scores(clf.predict_proba(test), labels)
    nearest = _scores(_nearest(test, cu_library, config), labels)
    print("Cu L2,3:", ours, "nearest fingerprint:", nearest)
    return ours, nearest


def test_cu_l23_references_fit_and_classify(cu_scores: tuple[dict[str, float], dict[str, float]]) -> None:
    """Measured references, out of the simulator's closed world: far above chance (1/3) and a much
    better NLL than the one-hot nearest fingerprint, but see the next test for accuracy.

    measured (this version): eelsprint accuracy 0.882, NLL 0.235, ECE 0.045; nearest fingerprint 0.820,
    4.97, 0.180 (0.1: 0.607, 0.94, 0.184).
    """
    ours, nearest = cu_scores
    assert ours["accuracy"] > 0.55, (ours, nearest)  # measured: 0.882; chance 0.333
    assert ours["nll"] < 0.3 * nearest["nll"], (ours, nearest)  # measured: 0.235 vs 4.97
    assert ours["ece"] < 0.25, (ours, nearest)  # measured: 0.045 (nearest fingerprint 0.180)


@pytest.fixture(scope="module")
def tio2_scores() -> tuple[dict[str, float], dict[str, float]]:
    """The measured Ti L2,3 image and the same image shifted by 0.5 eV through crop, rebin, power-law
    background and area normalisation; fit and classify both: (eelsprint's, nearest fingerprint's)."""
    torch.set_num_threads(2)
    image = read_spectra(REAL / "tio2" / "TiL_SI_high_loss.dm4")
    assert image.nav_shape == (6, 10)
    raw = image.flat()
    shifted = shift_spectra(raw, image.energy, np.full(len(raw), 0.5))
    data = Spectra(np.concatenate([raw, shifted]), image.energy, "TiL_SI_high_loss.dm4 (+ shifted)")
    labels = np.repeat([0, 1], len(raw))
    config = Config.from_dict(
        SHORT
        | {
            "preprocess": {
                "window": [440.0, 486.0],
                "rebin": 4,
                "background_window": [441.0, 454.0],
                "normalise": "area",
                "pca_components": 5,
            }
        }
    )
    clean = preprocess(Spectra(raw, image.energy), config.preprocess)
    mean = clean.flat().mean(0, keepdims=True)
    fingerprints = np.concatenate([mean, shift_spectra(mean, clean.energy, np.array([0.5]))])
    library = Library(fingerprints, clean.energy, np.array(["TiO2", "TiO2 +0.5 eV"]), "TiO2 SI mean")
    clf = FingerprintClassifier(config=config, progress=False).fit(data, library)
    proba = clf.predict_proba(data)
    assert proba.shape == (120, 2) and np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(-1), 1.0, atol=1e-5)
    ours = _scores(proba, labels)
    nearest = _scores(_nearest(data, library, config), labels)
    print("TiO2:", ours, "nearest fingerprint:", nearest)
    return ours, nearest


def test_tio2_spectrum_image_through_non_default_preprocessing(
    tio2_scores: tuple[dict[str, float], dict[str, float]],
) -> None:
    """120 spectra and a 0.5 eV shift on the short schedule: eelsprint is less accurate than the
    nearest fingerprint but far less confidently wrong.

    measured (this version): eelsprint accuracy 0.708, NLL 0.583, ECE 0.153; nearest fingerprint
    0.775, 6.22, 0.225 (0.2: 0.742, 0.754, 0.188; 0.1: 0.500, 0.694, 0.022: it stayed at p = 1/2.)
    """
    ours, nearest = tio2_scores
    assert ours["accuracy"] > 0.6, (ours, nearest)  # measured: 0.708 (two classes: chance 0.5)
    assert ours["nll"] < 0.2 * nearest["nll"], (ours, nearest)  # measured: 0.583 vs 6.22
    assert ours["ece"] < nearest["ece"], (ours, nearest)  # measured: 0.153 vs 0.225


GAPS = {
    "tio2_scores": "on the measured TiO2 image (120 spectra, short schedule) eelsprint is less accurate "
    "than the nearest fingerprint on the 0.5 eV shift: 0.708 vs 0.775 (measured; 0.742 in 0.2)",
}


@pytest.mark.parametrize(
    "scores",
    [
        pytest.param("cu_scores"),  # passes since 0.2 (0.1: 0.607 vs 0.820)
        *(pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=why)) for name, why in GAPS.items()),
    ],
)
def test_accuracy_beats_nearest_fingerprint_on_measured_data(
    scores: str, request: pytest.FixtureRequest
) -> None:
    ours, nearest = request.getfixturevalue(scores)
    assert ours["accuracy"] > nearest["accuracy"], (ours, nearest)
