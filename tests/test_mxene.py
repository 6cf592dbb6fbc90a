"""The paper's real DFT library (with its all-zero 0 % F class) loads and trains; skipped when absent."""

from __future__ import annotations

import numpy as np
import pytest

from eelsprint import Config, FingerprintClassifier
from eelsprint.data.io import read_library
from eelsprint.data.simulate import simulate_series
from eelsprint.inference.metrics import accuracy
from eelsprint.report.baselines import nearest_fingerprint, one_hot, pca_nearest_proba

from .conftest import SHARED_DATA
from .quality import majority_class

MXENE = SHARED_DATA / "mxene_dft"
pytestmark = pytest.mark.skipif(not MXENE.is_dir(), reason="../shared/data/mxene_dft not present")


def test_real_library_with_zero_class_trains_and_classifies() -> None:
    lib = read_library(MXENE)
    assert list(lib.classes) == ["F50", "F25", "F12.5", "F0"]
    assert np.all(lib.spectra[lib.labels == "F0"] == 0)
    series = simulate_series(n_frames=2, seed=4)
    cfg = Config.from_dict(
        {"train": {"epochs": 10, "raw_epochs": 10, "gp_iterations": 150, "kl_anneal_epochs": 4}}
    )
    clf = FingerprintClassifier(config=cfg, progress=False).fit(series.spectra, lib)
    proba = clf.predict_proba(series.spectra)
    assert proba.shape == (2, 19, 30, 4)
    assert np.isfinite(proba).all()
    np.testing.assert_allclose(proba.sum(-1), 1.0, atol=1e-5)
    # The simulator's compositions are named like the DFT classes and sit at similar intensities, but
    # their shapes differ from the DFT spectra. Baselines on the same pixels: the majority class of the
    # truth and the nearest DFT fingerprint (least squares).
    y = series.labels.reshape(-1)
    x = series.spectra.flat()
    acc = accuracy(proba.reshape(-1, 4), y)
    majority = float((y[y >= 0] == majority_class(y)).mean())
    nearest = accuracy(one_hot(nearest_fingerprint(x, lib), 4), y)
    pca_nearest = accuracy(pca_nearest_proba(x, lib), y)
    print(f"accuracy {acc:.4f}, majority {majority:.4f}, nearest {nearest:.4f}, PCA {pca_nearest:.4f}")
    # measured (seed 4): eelsprint 0.936 (0.871 when last measured, an earlier version; 0.514 before
    # the library-supervised latent), majority class (F0) 0.466, nearest DFT fingerprint 0.499,
    # PCA + nearest 0.502
    assert acc > 0.75, acc
    assert acc > majority + 0.2, (acc, majority)
    assert acc > max(nearest, pca_nearest) + 0.2, (acc, nearest, pca_nearest)
