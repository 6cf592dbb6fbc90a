"""The estimator on the simulator's data: accuracy, calibration, OOD, noise-aware variance, persistence."""

import dataclasses
import itertools
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.base import clone

from eelsprint import Config, FingerprintClassifier, default_model_path
from eelsprint.data.simulate import SimulatedSeries, simulate_series
from eelsprint.data.spectra import Spectra
from eelsprint.exceptions import ConfigError, InputDataError, NotFittedError
from eelsprint.inference.metrics import expected_calibration_error, ood_auroc
from eelsprint.inference.recalibrate import latent_moments, scaled_proba
from eelsprint.report.scoring import entropy
from tests.conftest import QUICK
from tests.test_cli import run_cli

from .quality import QUICK_HELD_OUT, check_classifier


@pytest.fixture(scope="module")
def result(fitted: FingerprintClassifier, held_out: SimulatedSeries):
    return fitted.classify(held_out.spectra)


def test_beats_the_baselines_and_is_calibrated(
    fitted: FingerprintClassifier, held_out: SimulatedSeries
) -> None:
    """Accuracy, ECE and NLL against the majority class, nearest fingerprint and PCA + nearest
    fingerprint on the same held-out pixels (bounds and measured values: ``quality.QUICK_HELD_OUT``)."""
    check_classifier(fitted, held_out, QUICK_HELD_OUT)


def test_out_of_library_pixels_get_higher_epistemic_uncertainty(
    fitted: FingerprintClassifier, result, held_out: SimulatedSeries
) -> None:
    """The epistemic term against the entropy of the plain softmax at the latent mean (the ablation
    without any variance) on the same pixels."""
    x, y = held_out.spectra.flat(), held_out.labels.reshape(-1)
    auroc = ood_auroc(result["epistemic"].values.reshape(-1), y)
    mean, var = latent_moments(fitted, x, encoder_variance=False)
    plugin = ood_auroc(entropy(scaled_proba(mean, 0 * var)), y)
    # shipped model, seeds 4-7: epistemic 0.997-0.9997 vs plugin entropy 0.958-0.977 (test_shipped_model)
    assert auroc > plugin, (auroc, plugin)
    # measured (evaluation/results/quick-model-metrics.json, training seeds 0/1/2): epistemic 1.0000 /
    # 1.0000 / 1.0000 against the plain softmax's entropy 0.9965 / 0.9991 / 0.9779
    assert auroc > 0.99, auroc


def test_result_layout(result, fitted: FingerprintClassifier) -> None:
    assert result["proba"].dims == ("frame", "y", "x", "class")
    assert result["latent_var"].shape == (3, 19, 30, fitted.config_.model.latent_dim)
    assert list(result["class"].values) == ["F50", "F25", "F12.5", "F0"]
    np.testing.assert_allclose(result["proba"].sum("class"), 1.0, atol=1e-5)
    np.testing.assert_allclose(result["entropy"], result["aleatoric"] + result["epistemic"], atol=1e-5)
    share = result["encoder_share"].values
    assert np.all((share >= 0) & (share <= 1))


def test_raw_encoder_variance_grows_with_noise(
    fitted: FingerprintClassifier, series: SimulatedSeries
) -> None:
    """Extra noise of 0, 0.2, 0.4, 0.8 (the data's own is ~0.15 at the window's start): the median total
    latent variance rises at every step and by > 15 % overall. Calibration against the clean spectra's
    latents: median squared error / median variance within [0.25, 1.5] up to the data's own noise level
    (seen: 0.41 and 0.74). Beyond it (0.4 and 0.8, 3-5x the data's noise, outside what the variance was
    calibrated on) the variance is too small: seen 1.3x and 1.8x here, 0.94x and 0.62x for the shipped
    model (6 frames); asserted below 2.5x. With 0.2's library-supervised latent (the raw encoder also
    sees noisy library copies) the noiseless spectra are over-covered: measured ratios 0.20, 0.93,
    1.19, 1.12, so the lower bound is 0.15."""
    clean = series.clean.reshape(-1, 240)[:400]
    rng = np.random.default_rng(0)
    with torch.no_grad():
        target, _ = fitted.vae_.encoder(torch.as_tensor(clean, dtype=torch.float32))
    medians, ratios = [], []
    for sd in (0.0, 0.2, 0.4, 0.8):
        mu, var = fitted.encode(clean + rng.normal(0, sd, clean.shape))
        medians.append(float(np.median(var.sum(-1))))
        ratios.append(float(np.median(((mu - target.numpy()) ** 2).sum(-1))) / medians[-1])
    assert all(b > a for a, b in itertools.pairwise(medians)), medians
    assert medians[-1] > 1.15 * medians[0], medians
    assert all(0.15 < r < 1.5 for r in ratios[:2]), ratios
    assert all(r < 2.5 for r in ratios[2:]), ratios


def test_predict_is_argmax_of_predict_proba(fitted: FingerprintClassifier, held_out: SimulatedSeries) -> None:
    x = held_out.spectra.flat()[:200]
    proba = fitted.predict_proba(x)
    assert proba.shape == (200, 4)
    np.testing.assert_array_equal(fitted.predict(x), fitted.classes_[proba.argmax(-1)])


def test_accepts_hyperspy_signal_and_keeps_its_grid(fitted: FingerprintClassifier) -> None:
    import hyperspy.api as hs

    s = simulate_series(n_frames=1, shape=(4, 5), seed=2).spectra
    signal = hs.signals.Signal1D(s.data[0])
    axis = signal.axes_manager.signal_axes[0]
    axis.offset, axis.scale, axis.units = 677.0, 0.25, "eV"
    proba = fitted.predict_proba(signal)
    assert proba.shape == (4, 5, 4)
    np.testing.assert_allclose(proba, fitted.predict_proba(s.data[0]), atol=1e-6)


def test_save_load_round_trip(
    fitted: FingerprintClassifier, fitted_dir: Path, held_out: SimulatedSeries
) -> None:
    loaded = FingerprintClassifier.load(fitted_dir, progress=False)
    x = held_out.spectra.flat()[:300]
    np.testing.assert_allclose(loaded.predict_proba(x), fitted.predict_proba(x), atol=1e-6)
    np.testing.assert_allclose(
        loaded.predict_proba(x, mode="exact"), fitted.predict_proba(x, mode="exact"), atol=1e-6
    )
    assert loaded.diagnostics_["active_dims"] == fitted.diagnostics_["active_dims"]


def test_fast_mode_agrees_with_exact_on_simulated_data(
    fitted: FingerprintClassifier, held_out: SimulatedSeries
) -> None:
    """Issue 3: closed-form ``fast`` vs Monte Carlo ``exact`` on 1,710 fresh pixels.

    Tolerances: mean |dp| < 0.01, max |dp| < 0.2, labels agree on >= 99 %, ECE no worse by more than
    0.01. Seen (shipped-model settings, another series): mean 0.003, max 0.11, 99.8 %, ECE 0.0052 vs
    0.0045.
    """
    fast = fitted.predict_proba(held_out.spectra, mode="fast").reshape(-1, 4)
    exact = fitted.predict_proba(held_out.spectra, mode="exact").reshape(-1, 4)
    diff = np.abs(fast - exact)
    assert diff.mean() < 0.01 and diff.max() < 0.2, (diff.mean(), diff.max())
    assert (fast.argmax(-1) == exact.argmax(-1)).mean() >= 0.99
    y = held_out.labels.reshape(-1)
    ece_fast = expected_calibration_error(fast, y, n_bins=10, equal_mass=True)
    assert ece_fast <= expected_calibration_error(exact, y, n_bins=10, equal_mass=True) + 0.01


def test_not_fitted_and_wrong_axis(fitted: FingerprintClassifier) -> None:
    with pytest.raises(NotFittedError, match="not fitted"):
        FingerprintClassifier().predict(np.zeros((2, 240)))
    far = Spectra(np.zeros((2, 240)), np.arange(240) * 0.25 + 900.0, "far.msa")
    with pytest.raises(
        InputDataError, match="far.msa: data cover 900-959.75 eV but the model needs 677-736.75"
    ):
        fitted.predict(far)
    with pytest.raises(InputDataError, match="without its energy axis"):
        fitted.predict(np.zeros((2, 100)))


def test_raw_encoder_variance_is_calibrated_on_held_out_spectra(fitted: FingerprintClassifier) -> None:
    """Before calibration the raw encoder's variance was too wide (seen: ratio 0.55-0.62, 3 frames)."""
    d = fitted.diagnostics_
    assert 0.2 < d["raw_variance_ratio"] < 0.95, d
    factor = fitted.raw_encoder_.scale_factor
    assert factor.shape == (fitted.config_.model.latent_dim,)
    assert float(factor.pow(2).mean()) == pytest.approx(d["raw_variance_ratio"], rel=1e-3)


def test_training_learned_a_used_latent(fitted: FingerprintClassifier) -> None:
    d = fitted.diagnostics_
    assert d["active_dims"] >= 4, d
    assert d["kl_total"] > 8.0, d


# -- the scikit-learn contract, seeding and devices ------------------------------------------------

#: 4 epochs: with 2 the latent fails its own library (self-consistency 0.25 against 1.0 by nearest
#: fingerprint, measured) and the model predicts through the spectral fallback, which has no head;
#: with 4 it passes (0.96) at the same cost (~3 s).
TINY = Config.from_dict(
    {
        "train": {"epochs": 4, "raw_epochs": 4, "gp_iterations": 20},
        "head": {"epochs": 2, "n_points": 2000},
    }
)


@pytest.fixture(scope="module")
def tiny_series() -> SimulatedSeries:
    """One frame of 8 x 10 pixels: enough to fit TINY in about a second."""
    return simulate_series(n_frames=1, shape=(8, 10), seed=0)


def test_clone_gives_an_unfitted_estimator_with_equal_params(fitted: FingerprintClassifier) -> None:
    clf = FingerprintClassifier(config=QUICK, progress=False, device="cpu")
    assert clf.get_params() == {"config": QUICK, "progress": False, "device": "cpu"}
    copy = clone(clf)
    assert copy is not clf and copy.get_params() == clf.get_params()
    assert not hasattr(copy, "gp_")
    refitted = clone(fitted)  # a fitted estimator clones to an unfitted one with its params
    assert refitted.get_params() == fitted.get_params() and not hasattr(refitted, "gp_")
    with pytest.raises(NotFittedError, match="not fitted"):
        refitted.predict(np.zeros((2, 240)))
    assert clf.set_params(device="auto") is clf and clf.device == "auto"


def test_unknown_mode_is_refused_everywhere(fitted: FingerprintClassifier, series: SimulatedSeries) -> None:
    x = series.spectra.data[0]
    message = r"^mode must be 'fast', 'exact' or 'head', got 'bogus'$"
    for method in (fitted.predict_proba, fitted.predict, fitted.classify, fitted.stream):
        with pytest.raises(ConfigError, match=message):
            method(x, mode="bogus")  # stream: at the call, before any frame
    assert fitted.live_mode() == "head" and fitted.live_mode("exact") == "exact"


def test_fit_is_reproducible_and_leaves_the_global_rng_alone(tiny_series: SimulatedSeries) -> None:
    """Same seed: identical probabilities in every mode (bit for bit on the CPU); another seed
    differs (seen: max |dp| 0.03-0.2 between seeds 0 and 1); the global RNG state is untouched."""
    torch_state, numpy_state = torch.get_rng_state(), np.random.get_state()  # noqa: NPY002 (the global one)

    def fit(seed: int) -> FingerprintClassifier:
        config = TINY.replace(train=dataclasses.replace(TINY.train, seed=seed))
        return FingerprintClassifier(config=config, progress=False).fit(
            tiny_series.spectra, tiny_series.library
        )

    first, second, other = fit(0), fit(0), fit(1)
    assert torch.equal(torch.get_rng_state(), torch_state)
    numpy_after = np.random.get_state()  # noqa: NPY002
    assert all(np.array_equal(a, b) for a, b in zip(numpy_after, numpy_state, strict=True))
    x = tiny_series.spectra
    for mode in ("fast", "exact", "head"):
        np.testing.assert_array_equal(first.predict_proba(x, mode=mode), second.predict_proba(x, mode=mode))
    assert np.abs(first.predict_proba(x) - other.predict_proba(x)).max() > 1e-3


def test_fit_and_classify_on_device(device: str, tiny_series: SimulatedSeries, tmp_path: Path) -> None:
    """Fit on ``device``; results come back as CPU numpy; saved weights reload on the CPU and agree.

    Tolerance of the reload: 1e-5 on the CPU (the same arithmetic), 1e-3 from CUDA (TF32/cuDNN
    convolutions; passed on a lent H200, 2026-11-28).
    """
    clf = FingerprintClassifier(config=TINY, progress=False, device=device)
    clf.fit(tiny_series.spectra, tiny_series.library)
    assert clf.device_.type == device and clf.gp_.alpha.device.type == device
    x = tiny_series.spectra
    results = {mode: clf.predict_proba(x, mode=mode) for mode in ("fast", "exact", "head")}
    for proba in results.values():
        assert isinstance(proba, np.ndarray) and proba.shape == (1, 8, 10, 4)
        np.testing.assert_allclose(proba.sum(-1), 1.0, atol=1e-5)
    mu, var = clf.encode(x)
    assert isinstance(mu, np.ndarray) and var.shape == (1, 8, 10, TINY.model.latent_dim)
    clf.save(tmp_path / "m")
    on_cpu = FingerprintClassifier.load(tmp_path / "m", progress=False)
    assert on_cpu.device_.type == "cpu" and on_cpu.get_params()["device"] == "cpu"
    atol = 1e-5 if device == "cpu" else 1e-3
    np.testing.assert_allclose(on_cpu.predict_proba(x), results["fast"], atol=atol)
    on_cpu.set_params(device=device)  # moved at the next prediction
    np.testing.assert_allclose(on_cpu.predict_proba(x), results["fast"], atol=atol)
    assert on_cpu.device_.type == device


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_without_cuda_and_unknown_devices_are_refused(tiny_series: SimulatedSeries) -> None:
    with pytest.raises(ConfigError, match=r"device 'cuda' asked for, but torch sees no CUDA device"):
        FingerprintClassifier(config=TINY, device="cuda").fit(tiny_series.spectra, tiny_series.library)
    with pytest.raises(ConfigError, match=r"^device must be 'cpu', 'cuda' or 'auto', got 'tpu'$"):
        FingerprintClassifier(config=TINY, device="tpu").fit(tiny_series.spectra, tiny_series.library)
    assert FingerprintClassifier.load_default(progress=False, device="auto").device_.type == "cpu"


def test_shipped_model_is_found_and_loads() -> None:
    path = default_model_path()
    assert (path / "weights.safetensors").is_file()
    clf = FingerprintClassifier.load_default(progress=False)
    assert list(clf.classes_) == ["F50", "F25", "F12.5", "F0"] and clf.head_ is not None


def test_cli_refuses_an_unknown_mode(
    fitted_dir: Path, series: SimulatedSeries, tmp_path: Path, monkeypatch, capsys
) -> None:
    data = tmp_path / "frame.npz"
    np.savez(data, x=series.spectra.data[0], energy=series.spectra.energy)
    for command in (["classify", str(data)], ["watch", str(tmp_path), "--once"]):
        options = ["-m", str(fitted_dir), "-o", str(tmp_path / "out"), "--mode", "bogus"]
        code, _, err = run_cli(monkeypatch, capsys, *command, *options)
        assert code == 1 and err.strip().splitlines() == [
            "error: mode must be 'fast', 'exact' or 'head', got 'bogus'"
        ], err
    assert not (tmp_path / "out").exists()
