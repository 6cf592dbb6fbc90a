"""The paper's real DFT library (with its all-zero 0 % F class) loads and trains; skipped when absent."""

from __future__ import annotations

import numpy as np
import pytest

from eelsprint import Config, FingerprintClassifier
from eelsprint.data.io import read_library
from eelsprint.data.simulate import simulate_series

from .conftest import SHARED_DATA

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
    # the simulator's compositions are named like the DFT classes and sit at similar intensities, but
    # their shapes differ from the DFT spectra: a model trained on the real library is still far above
    # chance (0.25) on them: 0.871 seen with seed 4 (0.514 before the latent was trained to separate
    # the library, 0.3)
    y = series.labels.reshape(-1)
    keep = y >= 0
    assert (proba.reshape(-1, 4).argmax(-1)[keep] == y[keep]).mean() > 0.75
