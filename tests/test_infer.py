"""The real-time path: the distilled head against its GP teacher, the static graph, streaming."""

from __future__ import annotations

import copy
from typing import get_args

import numpy as np
import pytest
import torch

from eelsprint import Config, FingerprintClassifier
from eelsprint.config import PRECISIONS, HeadConfig, InferenceConfig, ModelConfig, Precision, check_precision
from eelsprint.data.simulate import SimulatedSeries
from eelsprint.exceptions import ConfigError, NotFittedError
from eelsprint.inference.chunks import map_chunks
from eelsprint.inference.metrics import expected_calibration_error, ood_auroc
from eelsprint.inference.runtime import physical_cores, run_chunks, torch_threads
from eelsprint.inference.uncertainty import Prediction
from eelsprint.models.head import DTYPES, OUTPUTS, RealtimeModel, UncertaintyHead, with_precision
from eelsprint.models.vae import ConvEncoder
from eelsprint.report.baselines import nearest_fingerprint, one_hot


@pytest.fixture(scope="module")
def both(fitted: FingerprintClassifier, series: SimulatedSeries) -> dict[str, object]:
    """The head's and the GP's (fast, the teacher) results on the whole series."""
    return {
        "head": fitted.classify(series.spectra, mode="head"),
        "gp": fitted.classify(series.spectra, mode="fast"),
    }


def test_fit_distils_a_head_and_reports_its_agreement(fitted: FingerprintClassifier) -> None:
    assert fitted.head_ is not None
    report = fitted.diagnostics_["head"]
    # held-out in-distribution points of the distillation set
    assert report["mean_abs_dp"] < 0.02
    assert report["label_agreement"] > 0.98


def test_head_agrees_with_its_gp_teacher(both: dict, series: SimulatedSeries) -> None:
    head, gp = both["head"], both["gp"]
    dp = np.abs(head["proba"].values - gp["proba"].values)
    # tolerance: mean |dp| <= 0.02, 99th percentile <= 0.10, labels equal on >= 98 % of pixels
    assert dp.mean() < 0.02
    assert np.quantile(dp, 0.99) < 0.10
    assert (head["label"].values == gp["label"].values).mean() > 0.98
    # the uncertainty terms follow the teacher's ranking
    assert np.corrcoef(head["epistemic"].values.ravel(), gp["epistemic"].values.ravel())[0, 1] > 0.8
    assert np.corrcoef(head["aleatoric"].values.ravel(), gp["aleatoric"].values.ravel())[0, 1] > 0.9


def test_head_calibration_costs_at_most_one_hundredth_of_ece(both: dict, series: SimulatedSeries) -> None:
    """The head's ECE against its GP teacher's and against the one-hot nearest fingerprint's."""
    labels = series.labels.reshape(-1)
    ece = {k: expected_calibration_error(ds["proba"].values.reshape(-1, 4), labels) for k, ds in both.items()}
    nearest = one_hot(nearest_fingerprint(series.spectra.flat(), series.library), 4)
    ece["nearest_fingerprint"] = expected_calibration_error(nearest, labels)
    assert ece["head"] <= ece["gp"] + 0.01, ece
    # measured (evaluation/results/quick-model-metrics.json, training seeds 0/1/2): head 0.0115 /
    # 0.0122 / 0.0131, GP 0.0116 / 0.0124 / 0.0139, nearest fingerprint 0.0362 on this series
    assert ece["head"] < ece["nearest_fingerprint"] - 0.015, ece
    assert ece["head"] < 0.02, ece


def test_head_flags_out_of_library_pixels(both: dict, series: SimulatedSeries) -> None:
    """The head's epistemic term ranks out-of-library pixels about as well as its teacher's."""
    labels = series.labels.reshape(-1)
    auroc = {k: ood_auroc(ds["epistemic"].values.reshape(-1), labels) for k, ds in both.items()}
    assert auroc["head"] > auroc["gp"] - 0.02, auroc
    assert auroc["head"] > 0.99, auroc  # measured: 1.0000 (seeds 0-2; GP 1.0000 each)


def test_head_outputs_are_consistent(both: dict) -> None:
    ds = both["head"]
    np.testing.assert_allclose(ds["proba"].sum("class"), 1.0, atol=1e-5)
    np.testing.assert_allclose(ds["aleatoric"] + ds["epistemic"], ds["entropy"], atol=1e-5)
    assert float(ds["epistemic"].min()) >= 0 and float(ds["aleatoric"].min()) >= 0
    assert float(ds["entropy"].max()) <= np.log(4) + 1e-5
    assert ds["proba"].shape == (3, 19, 30, 4)
    assert ds.attrs["integration"] == "head"


def test_predict_with_mode_head_is_argmax_of_proba(
    fitted: FingerprintClassifier, series: SimulatedSeries
) -> None:
    proba = fitted.predict_proba(series.spectra, mode="head")
    assert proba.shape == (3, 19, 30, 4)
    np.testing.assert_array_equal(
        fitted.predict(series.spectra, mode="head"), fitted.classes_[proba.argmax(-1)]
    )


def test_head_is_uncertain_far_from_the_data(fitted: FingerprintClassifier, series: SimulatedSeries) -> None:
    mu, var = fitted.encode(series.spectra)
    mu, var = torch.as_tensor(mu.reshape(-1, mu.shape[-1])), torch.as_tensor(var.reshape(-1, var.shape[-1]))
    spread = mu.std(0)
    far = mu.mean(0) + 10 * spread * torch.nn.functional.normalize(torch.randn(200, mu.shape[1]), dim=-1)
    with torch.no_grad():
        near_epi = fitted.head_(mu, var)[3].mean()
        far_epi = fitted.head_(far, var[:200])[3].mean()
    assert far_epi > 2 * near_epi


def test_realtime_model_is_the_encoder_then_the_head(
    fitted: FingerprintClassifier, series: SimulatedSeries
) -> None:
    x = torch.as_tensor(series.spectra.flat()[:300], dtype=torch.float32)
    model = fitted.realtime_model()
    assert isinstance(model, RealtimeModel)
    with torch.no_grad():
        loc, scale = fitted.raw_encoder_(x)
        expected = fitted.head_(loc, scale**2)
    out = dict(zip(OUTPUTS, run_chunks(model, x, chunk=128), strict=True))
    np.testing.assert_allclose(out["latent_mean"], loc, atol=1e-5)
    np.testing.assert_allclose(out["latent_var"], scale**2, rtol=1e-4, atol=1e-7)
    for name, value in zip(("proba", "entropy", "aleatoric", "epistemic"), expected, strict=False):
        np.testing.assert_allclose(out[name], value, atol=1e-5)
    # paper encoder (0.86 MFLOP) + the head's dense layers
    assert 800_000 < model.flops_per_spectrum(240) < 1_000_000


def test_reduced_precision_stays_close(fitted: FingerprintClassifier, series: SimulatedSeries) -> None:
    x = torch.as_tensor(series.spectra.flat()[:500], dtype=torch.float32)
    ref = run_chunks(fitted.realtime_model(), x)[0]
    for precision, tolerance in (("bf16", 0.03), ("int8", 0.03)):
        proba = run_chunks(with_precision(fitted.realtime_model(), precision), x)[0]
        assert float((proba - ref).abs().mean()) < tolerance, precision


def test_stream_yields_one_dataset_per_frame(fitted: FingerprintClassifier, series: SimulatedSeries) -> None:
    frames = (frame for frame in series.spectra.data)  # a generator, as from a detector
    results = list(fitted.stream(frames))
    assert [ds.attrs["frame"] for ds in results] == [0, 1, 2]
    assert all(ds["proba"].shape == (19, 30, 4) and ds.attrs["latency_ms"] > 0 for ds in results)
    assert results[0].attrs["integration"] == "head"
    np.testing.assert_allclose(
        results[1]["proba"].values, fitted.predict_proba(series.spectra.data[1], mode="head"), atol=1e-6
    )


def test_saved_model_keeps_its_head(
    fitted: FingerprintClassifier, fitted_dir, series: SimulatedSeries
) -> None:
    loaded = FingerprintClassifier.load(fitted_dir, progress=False)
    x = series.spectra.data[0]
    np.testing.assert_allclose(
        loaded.predict_proba(x, mode="head"), fitted.predict_proba(x, mode="head"), atol=1e-6
    )


def test_model_without_head_says_so(fitted: FingerprintClassifier, series: SimulatedSeries) -> None:
    bare = copy.copy(fitted)
    bare.__dict__.pop("_realtime_cache", None)
    bare.head_ = None
    with pytest.raises(NotFittedError, match="no distilled head"):
        bare.predict_proba(series.spectra.data[0], mode="head")
    # streaming falls back to the configured mode
    assert next(bare.stream([series.spectra.data[0]])).attrs["integration"] == "fast"


def test_head_settings_validate_themselves() -> None:
    assert Config.from_dict({"head": {"hidden": 32}}).head.hidden == 32
    assert InferenceConfig(mode="head").mode == "head"
    with pytest.raises(ConfigError, match="teacher"):
        HeadConfig(teacher="mcmc")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"\[head\]"):
        Config.from_dict({"head": {"epochs": 0}})
    with pytest.raises(ConfigError, match="mode"):
        InferenceConfig(mode="slow")  # type: ignore[arg-type]


def test_threads_default_to_physical_cores_and_are_restored() -> None:
    before = torch.get_num_threads()
    with torch_threads() as n:
        assert n == physical_cores() >= 1
        assert torch.get_num_threads() == n
    assert torch.get_num_threads() == before


def test_map_chunks_joins_every_output_kind_as_one_call_would() -> None:
    x, y = torch.arange(10.0).reshape(5, 2), np.arange(5)
    calls = []

    def fn(a: torch.Tensor, b: np.ndarray) -> tuple[torch.Tensor, None, np.ndarray, Prediction]:
        calls.append(len(a))
        return a * 2, None, b + 1, Prediction(*(a[:, 0] * k for k in range(6)))

    doubled, nothing, shifted, pred = map_chunks(fn, x, y, chunk=2)
    assert calls == [2, 2, 1]
    torch.testing.assert_close(doubled, x * 2)
    assert nothing is None and shifted.tolist() == [1, 2, 3, 4, 5]
    assert torch.equal(map_chunks(lambda a: a.T, x, chunk=2, dim=1), x.T)
    assert isinstance(pred, Prediction) and torch.equal(pred.epistemic, x[:, 0] * 3)
    assert map_chunks(lambda a: a * 2, x[:0], chunk=4).shape == (0, 2)  # empty: one call, right shape
    with pytest.raises(ValueError, match="one length"):
        map_chunks(fn, x, y[:3], chunk=2)


def test_one_precision_vocabulary_names_what_each_runtime_takes() -> None:
    assert set(DTYPES) == set(get_args(Precision)) == {p for ps in PRECISIONS.values() for p in ps}
    assert check_precision("bf16", "eager") == "bf16" and check_precision("fp16", "tensorrt") == "fp16"
    with pytest.raises(
        ConfigError, match=r"'fp16' is not available for eager; use fp32, bf16 or int8 \(fp16: tensorrt"
    ):
        InferenceConfig(head_precision="fp16")
    with pytest.raises(ConfigError, match=r"'bf16' is not available for onnx; use fp32 \(bf16: eager only\)"):
        check_precision("bf16", "onnx")
    with pytest.raises(ConfigError, match="'fp64' is unknown; use fp32 or fp16 for tensorrt"):
        check_precision("fp64", "tensorrt")
    with pytest.raises(ConfigError, match="fp16: tensorrt only"):
        with_precision(RealtimeModel(ConvEncoder(240, ModelConfig()), UncertaintyHead(8, 4)), "fp16")


def test_model_input_is_what_the_model_sees(fitted: FingerprintClassifier, series: SimulatedSeries) -> None:
    prepared = fitted.prepare(series.spectra)
    x, nav, source = prepared.flat(), prepared.nav_shape, prepared.source
    assert nav == series.spectra.nav_shape and x.shape == (np.prod(nav), len(fitted.energy_))
    assert source == series.spectra.source
    again = fitted.prepare(x.reshape(*nav, -1))  # already on the model's axis: as is
    same, nav_again = again.flat(), again.nav_shape
    assert nav_again == nav and np.array_equal(same, x)
    from eelsprint.report.build import model_pixels

    frames_first = model_pixels(fitted, [series.spectra], frames_axis=0)
    assert np.array_equal(frames_first, x)  # the simulator's frames are already the first axis
