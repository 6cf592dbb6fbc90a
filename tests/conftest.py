"""Shared fixtures: a small simulated series and a classifier fitted on it once per session.

Devices (as pyro's ``PYRO_DEVICE``): tests that take the ``device`` fixture run on each device
in ``EELSPRINT_DEVICE`` (comma-separated, e.g. ``cuda`` or ``cpu,cuda``), by default on the
CPU and, where torch sees CUDA, on ``cuda`` too. Tests marked ``gpu`` are skipped without CUDA.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from eelsprint import Config, FingerprintClassifier
from eelsprint.data.simulate import SimulatedSeries, simulate_series

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"

#: The default schedule with fewer GP iterations: the session's shared model. (15 epochs gave an
#: OOD AUROC of only 0.80 on 3 frames; 40 gives 0.9996, see the OOD test.)
QUICK = Config.from_dict({"train": {"gp_iterations": 200}})


#: The devices the ``device`` fixture runs over.
DEVICES = [
    d.strip()
    for d in os.environ.get("EELSPRINT_DEVICE", "cpu,cuda" if torch.cuda.is_available() else "cpu").split(",")
    if d.strip()
]


@pytest.fixture(params=DEVICES)
def device(request: pytest.FixtureRequest) -> str:
    """Each device of :data:`DEVICES` in turn."""
    return str(request.param)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs CUDA (gpu marker); this machine has none")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def series() -> SimulatedSeries:
    """Three frames of 19 x 30 pixels (1,710 spectra) of the default simulator."""
    return simulate_series(n_frames=3, seed=0)


@pytest.fixture(scope="session")
def fitted(series: SimulatedSeries) -> FingerprintClassifier:
    """A classifier fitted on ``series`` with the default schedule (about a minute on 2 cores).

    ``EELSPRINT_TEST_MODEL=DIR`` loads ``DIR`` instead: this fixture's model saved earlier (same code,
    ``QUICK``, ``series``), to iterate on tests without refitting. CI does not set it.
    """
    torch.set_num_threads(2)
    saved = os.environ.get("EELSPRINT_TEST_MODEL")
    if saved:
        return FingerprintClassifier.load(saved, progress=False)
    return FingerprintClassifier(config=QUICK, progress=False).fit(series.spectra, series.library)


@pytest.fixture(scope="session")
def fitted_dir(fitted: FingerprintClassifier, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``fitted`` saved as a model directory."""
    path = tmp_path_factory.mktemp("model") / "model"
    fitted.save(path)
    return path


@pytest.fixture(scope="session")
def held_out() -> SimulatedSeries:
    """A fresh 3-frame series (seed 11: other maps and noise) for ``fitted``."""
    return simulate_series(n_frames=3, seed=11)


@pytest.fixture(scope="session")
def shipped() -> FingerprintClassifier:
    """The shipped ``models/default``."""
    torch.set_num_threads(2)
    return FingerprintClassifier.load(ROOT / "models" / "default", progress=False)


@pytest.fixture(scope="session")
def fresh() -> SimulatedSeries:
    """A fresh 6-frame series (seed 4) for the shipped model: not its training series (seed 0) nor the
    model card's (1-3)."""
    return simulate_series(n_frames=6, seed=4)


#: A model that trains in seconds (tests of errors and files, not of accuracy).
RELIABILITY_FAST = {
    "train": {"epochs": 2, "raw_epochs": 2, "gp_iterations": 30},
    "nuisance": {"n_augment": 4},
    "head": {"n_points": 512, "epochs": 2},
}


@pytest.fixture(scope="session")
def rel_env(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Tiny inputs (120 spectra of 240 channels), configs, and a model fitted once on them (~15 s).

    Used by ``test_reliability`` and ``test_fuzz``; tests must not change these files.
    """
    import numpy as np

    root = tmp_path_factory.mktemp("rel")
    s = simulate_series(n_frames=1, shape=(10, 12), seed=5)
    np.savez(root / "scan.npz", x=s.spectra.data[0], energy=s.spectra.energy)
    lib = s.library
    np.savez(root / "library.npz", spectra=lib.spectra, energy=lib.energy, labels=lib.labels)
    (root / "fast.toml").write_text("[train]\nepochs = 2\nraw_epochs = 2\ngp_iterations = 30\n")
    tiny = "[train]\nepochs = 1\nraw_epochs = 1\ngp_iterations = 3\n[head]\nenabled = false\n"
    (root / "tiny.toml").write_text(tiny)
    torch.set_num_threads(2)
    config = Config.from_dict(RELIABILITY_FAST)
    FingerprintClassifier(config=config, progress=False).fit(s.spectra, lib).save(root / "model")
    return {"root": root, "scan": root / "scan.npz", "library": root / "library.npz", "model": root / "model"}
