"""Tests of the evaluation report: metrics, figures, posterior draws, CLI, evaluation scripts."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import math
import os
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from types import ModuleType
from typing import Any

import arviz as az
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

from eelsprint import Config, FingerprintClassifier
from eelsprint.cli import app
from eelsprint.data.simulate import SimulatedSeries, simulate_series
from eelsprint.data.spectra import Spectra
from eelsprint.exceptions import ConfigError, InputDataError
from eelsprint.inference.metrics import (
    confusion,
    macro_f1,
    reliability_curve,
    selective_area,
    selective_curve,
)
from eelsprint.report.build import ReportConfig, build_report, frames_of, read_truth, write_report
from eelsprint.report.scoring import TRUTH_KEYS

EVALUATION = Path(__file__).resolve().parents[1] / "evaluation"
SMALL = ReportConfig(n_draws=20, n_bootstrap=50, tsne_points=150)
REQUIRED = (*TRUTH_KEYS, "silhouette_vae", "silhouette_pca")
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fresh3() -> SimulatedSeries:
    """Three fresh frames (seed 4) for the shipped model."""
    return simulate_series(n_frames=3, seed=4)


@pytest.fixture(scope="module")
def written(
    shipped: FingerprintClassifier, fresh3: SimulatedSeries, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    """A report with ground truth of the shipped model on 3 fresh frames, written to a folder."""
    report = build_report(shipped, [fresh3.spectra], ["series"], fresh3.labels, config=SMALL)
    out = tmp_path_factory.mktemp("report")
    write_report(report, out)
    return out


@pytest.fixture(scope="module")
def metrics(written: Path) -> dict[str, Any]:
    return json.loads((written / "metrics.json").read_text())


def _load_script(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"evaluation_{name}", EVALUATION / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class _Images(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.sources: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.sources.append(dict(attrs).get("src") or "")


def _decoded_images(html: str) -> list[Image.Image]:
    parser = _Images()
    parser.feed(html)
    images = []
    for src in parser.sources:
        prefix = "data:image/png;base64,"
        assert src.startswith(prefix), src[:40]
        png = base64.b64decode(src[len(prefix) :], validate=True)
        assert png.startswith(PNG_SIGNATURE)
        image = Image.open(io.BytesIO(png))
        image.load()
        images.append(image)
    return images


# -- metrics.json ------------------------------------------------------------------------------


def test_metrics_json_has_every_key(metrics: dict[str, Any]) -> None:
    for key in REQUIRED:
        assert metrics[key] is not None, key
    assert set(metrics["baselines"]) == {
        "nearest_fingerprint",
        "pca_nearest_fingerprint",
        "peak_ratio",
        "pca_gp",
    }
    for name, row in metrics["baselines"].items():
        for key in REQUIRED:
            assert row[key] is not None, (name, key)
    assert len(metrics["silhouette_vae"]) == len(metrics["silhouette_pca"]) == 3
    for key in TRUTH_KEYS:
        value = metrics[key]
        assert isinstance(value, float) and math.isfinite(value)
    assert 0.0 <= metrics["ece"] <= 1.0 and 0.0 <= metrics["brier"] <= 2.0
    for extra in (
        "confusion_matrix",
        "selective_area",
        "error_auroc_by_term",
        "ood_auroc_by_term",
        "recalibration",
        "ablations",
        "class_fractions",
        "share_above_threshold",
        "posterior_predictive",
    ):
        assert extra in metrics, extra


def test_metrics_numbers_mean_something(metrics: dict[str, Any]) -> None:
    """The shipped model on 3 fresh frames, against the report's own baselines and ablations."""
    baselines, ablations = metrics["baselines"], metrics["ablations"]
    simple = ("nearest_fingerprint", "pca_nearest_fingerprint", "peak_ratio")
    # measured (seed 4): accuracy 0.9686 vs 0.9626 (nearest fingerprint, PCA + nearest) and 0.9735
    # (pca_gp); NLL 0.080 vs 1.03 and 0.310 (pca_gp); ECE (10 equal-mass bins) 0.0100 vs 0.0374.
    # Against pca_gp (the paper's classifier) on this series: 0.9723 with the GP on clean latents, 0.9686
    # now, behind by 0.005; over the model card's series 1-3 the two are level (0.968 +- 0.009 against
    # 0.966 +- 0.005). It wins on NLL and ECE by far.
    assert metrics["accuracy"] > max(baselines[n]["accuracy"] for n in simple) + 0.005
    assert metrics["accuracy"] > baselines["pca_gp"]["accuracy"] - 0.01
    assert metrics["nll"] < 0.2 * min(baselines[n]["nll"] for n in simple)
    assert metrics["nll"] < 0.5 * baselines["pca_gp"]["nll"]
    assert metrics["ece"] < 0.5 * min(baselines[n]["ece"] for n in simple)
    assert metrics["ece"] < 0.02  # measured: 0.0100 (seed 4)
    # epistemic vs the entropy of the plain softmax at the latent mean; measured: 1.0000 vs 0.9985 (0.9982
    # vs 0.9647 with the GP on clean latents: a GP that learnt the noise is a better detector on its own)
    assert metrics["ood_auroc"] >= ablations["plugin_softmax"]["ood_auroc"]
    assert metrics["ood_auroc"] > 0.99  # measured: 1.0000 (seed 4)
    assert metrics["error_auroc"] > 0.91  # measured: 0.955 (seed 4); card 0.948 +- 0.013; one-hot: 0.5
    matrix = np.array(metrics["confusion_matrix"])
    assert matrix.shape == (5, 4) and matrix.sum() == metrics["n_pixels"]
    assert np.trace(matrix[:4]) / matrix[:4].sum() == pytest.approx(metrics["accuracy"])
    assert set(metrics["error_auroc_by_term"]) >= {"entropy", "aleatoric", "epistemic", "var_from_encoder"}
    assert metrics["selective_area"] >= metrics["accuracy"]  # rejecting uncertain pixels first helps
    # one-hot baselines pay the clipped NLL for every error
    nearest = baselines["nearest_fingerprint"]
    assert nearest["nll"] == pytest.approx((1 - nearest["accuracy"]) * -math.log(1e-12), rel=1e-6)
    assert nearest["error_auroc"] == pytest.approx(0.5)  # constant entropy ranks nothing


def test_temperature_scaling_is_reported(metrics: dict[str, Any]) -> None:
    rec = metrics["recalibration"]
    assert rec["n_fit"] + rec["n_held_out"] == int((np.array(metrics["confusion_matrix"])[:4]).sum())
    # The shipped model is already calibrated on the simulator: the temperature fitted on 30 % of the
    # labelled pixels is near 1 and changes the held-out NLL by less than its noise. Measured (seed 4):
    # T = 0.978, held-out NLL 0.07912 -> 0.07922, ECE 0.0099 -> 0.0102 (with the GP on clean latents
    # temperature scaling lowered the held-out NLL).
    assert 0.8 < rec["temperature"] < 1.25, rec
    assert abs(rec["after"]["nll"] - rec["before"]["nll"]) < 0.005, rec
    assert rec["after"]["accuracy"] == rec["before"]["accuracy"]  # a temperature keeps every argmax


def _fraction_errors(metrics: dict[str, Any], series: SimulatedSeries) -> tuple[np.ndarray, np.ndarray]:
    """Per (frame, class): is the true fraction inside the interval, and |interval mean - truth|."""
    truth = series.labels.reshape(len(metrics["class_fractions"]), -1)
    covered, errors = [], []
    for i, fractions in enumerate(metrics["class_fractions"].values()):
        for k, f in enumerate(fractions.values()):
            true = float((truth[i] == k).mean())  # share of the frame's pixels
            covered.append(f["low"] <= true <= f["high"])
            errors.append(abs(f["mean"] - true))
    return np.array(covered), np.array(errors)


def test_class_fractions_have_credible_intervals(metrics: dict[str, Any], fresh3: SimulatedSeries) -> None:
    """The intervals' means against the simulator's known fractions (share of each frame's pixels).

    measured (seed 4, 3 frames x 4 classes): mean |error| 0.015, max 0.032.
    """
    assert metrics["hdi_prob"] == pytest.approx(0.94)
    for frame, fractions in metrics["class_fractions"].items():
        assert sum(f["mean"] for f in fractions.values()) == pytest.approx(1.0, abs=1e-9), frame
        for f in fractions.values():
            assert 0.0 <= f["low"] <= f["mean"] + 1e-9 and f["mean"] - 1e-9 <= f["high"] <= 1.0
    _, errors = _fraction_errors(metrics, fresh3)
    assert errors.mean() < 0.03 and errors.max() < 0.05, errors
    assert all(0.0 <= s <= 1.0 for s in metrics["share_above_threshold"])


@pytest.mark.xfail(
    strict=True,
    reason="the 94 % intervals cover the true fractions in 2 of 12 cases (measured, seed 4): they hold "
    "the per-pixel label uncertainty only, not the classifier's systematic errors (README)",
)
def test_class_fraction_intervals_cover_the_true_fractions(
    metrics: dict[str, Any], fresh3: SimulatedSeries
) -> None:
    """Coverage of the simulator's true fractions by the 94 % intervals: at least 80 % would be honest
    (12 intervals). measured: 0.167 (seed 4). Known gap; strict xfail so that a fix is noticed."""
    covered, _ = _fraction_errors(metrics, fresh3)
    assert covered.mean() >= 0.8, covered


def test_silhouette_vae_separates_better_than_pca(metrics: dict[str, Any]) -> None:
    """The paper's Fig. 7b claim (VAE latents separate the classes better than PCA) holds for the
    0.2 model, whose latent is trained to separate the library; it did not for 0.1 (PCA higher in
    every frame: VAE 0.524 / 0.324 / 0.335, PCA 0.541 / 0.361 / 0.430).

    measured (0.2, seed 4): VAE 0.623 / 0.400 / 0.489, PCA 0.562 / 0.339 / 0.454.
    """
    vae, pca = np.array(metrics["silhouette_vae"]), np.array(metrics["silhouette_pca"])
    assert vae.shape == pca.shape == (3,)
    assert (vae > pca).all(), (vae, pca)
    assert (vae > 0.35).all(), vae  # measured >= 0.400


# -- report.html and posterior.nc --------------------------------------------------------------


def test_every_embedded_image_decodes(written: Path) -> None:
    html = (written / "report.html").read_text(encoding="utf-8")
    assert html.startswith("<!DOCTYPE html>") and "http://" not in html and "https://" not in html
    images = _decoded_images(html)
    assert (
        len(images) >= 12
    )  # maps (2), fractions, uncertainty, confusion, reliability, selective, latent (3), ...
    for image in images:
        assert image.format == "PNG" and image.size[0] > 0 and image.size[1] > 0
    for section in (
        "Summary",
        "Calibration",
        "Uncertainty quality",
        "Latent space",
        "Posterior-predictive check",
        "Active learning",
    ):
        assert f">{section}</h2>" in html


def test_report_renders_in_a_headless_browser(written: Path, tmp_path: Path) -> None:
    """Chromium screenshot of the top of the page: not blank, and the colour figures are drawn.

    Skipped without ``chromium`` on the PATH, except in CI (``.ci/run`` installs it and sets
    ``EELSPRINT_REQUIRE_BROWSER=1``, so a missing browser fails there).
    """
    if shutil.which("chromium") is None:
        if os.environ.get("EELSPRINT_REQUIRE_BROWSER"):
            pytest.fail("EELSPRINT_REQUIRE_BROWSER is set but chromium is not on the PATH")
        pytest.skip("needs headless chromium (apt-get install chromium)")
    shot = tmp_path / "shot.png"
    command = [
        "chromium",
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--hide-scrollbars",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--window-size=1200,4000",
        f"--screenshot={shot}",
        (written / "report.html").as_uri(),
    ]
    subprocess.run(command, check=True, capture_output=True, timeout=120)
    grey = np.asarray(Image.open(shot).convert("L"), dtype=float)
    saturation = np.asarray(Image.open(shot).convert("HSV"), dtype=float)[..., 1]
    assert grey.shape == (4000, 1200)
    assert (grey < 250).mean() > 0.10  # measured: 0.128 (shipped model, seed 4)
    assert (saturation > 80).mean() > 0.05  # measured: 0.064


def test_report_table_lists_every_method(written: Path, metrics: dict[str, Any]) -> None:
    html = (written / "report.html").read_text(encoding="utf-8")
    for name in ("eelsprint", *metrics["baselines"], "latent_mean_only"):
        assert f"<td>{name}" in html or f"<td>eelsprint: {name}" in html, name


def test_posterior_draws_are_inference_data(written: Path, fresh3: SimulatedSeries) -> None:
    idata = az.from_netcdf(written / "posterior.nc", engine="h5netcdf")
    proba = idata["posterior_predictive"]["proba"]
    assert proba.shape == (1, SMALL.n_draws, fresh3.labels.size, 4)
    np.testing.assert_allclose(proba.sum("class").values, 1.0, atol=1e-5)
    fraction = idata["posterior_predictive"]["fraction"]
    assert fraction.sizes["frame"] == 3
    assert az.hdi(fraction, hdi_prob=0.9)["fraction"].shape == (3, 4, 2)
    np.testing.assert_array_equal(np.bincount(idata["constant_data"]["frame_index"].values), [570, 570, 570])


# -- inputs ------------------------------------------------------------------------------------


def test_frames_of_series_and_single_scans() -> None:
    energy = np.arange(20.0)
    series = Spectra(np.zeros((3, 4, 5, 20)), energy, "s.npz")
    scan = Spectra(np.zeros((4, 5, 20)), energy, "scan.npz")
    frames = frames_of([series, scan], ["s", "scan"])
    assert [f.name for f in frames] == ["s[0]", "s[1]", "s[2]", "scan"]
    assert [f.start for f in frames] == [0, 20, 40, 60] and frames[-1].stop == 80
    by_rows = frames_of([series], ["s"], frames_axis=1)
    assert len(by_rows) == 4 and by_rows[0].shape == (3, 5)
    line = frames_of([Spectra(np.zeros((7, 20)), energy)], ["line"])[0]
    assert line.map(np.arange(7)).shape == (1, 7)
    with pytest.raises(InputDataError, match="frames axis 3 does not exist"):
        frames_of([series], ["s"], frames_axis=3)


def test_read_truth(tmp_path: Path) -> None:
    classes = ["F50", "F25", "F0"]
    path = tmp_path / "truth.npz"
    np.savez(path, label=np.array([["F25", "F0"], ["other", "F50"]]))
    np.testing.assert_array_equal(read_truth(path, classes, 4), [[1, 2], [-1, 0]])
    with pytest.raises(InputDataError, match="has 4 entries but the data have 5 pixels"):
        read_truth(path, classes, 5)
    np.savez(path, label=np.array([0, 3]))
    with pytest.raises(InputDataError, match="must be -1 or a class index 0..2"):
        read_truth(path, classes, 2)
    np.savez(path, labels=np.array([0, 1]))
    with pytest.raises(InputDataError, match="no array 'label'"):
        read_truth(path, classes, 2)
    with pytest.raises(InputDataError, match="truth file not found"):
        read_truth(tmp_path / "missing.npz", classes, 2)


def test_too_few_pixels_is_a_clear_error(fitted: FingerprintClassifier, series: SimulatedSeries) -> None:
    few = Spectra(series.spectra.data[0, 0, :5], series.spectra.energy, "five.npz")
    with pytest.raises(InputDataError, match="five.npz: a report needs at least 10 spectra, got 5"):
        build_report(fitted, [few])


def test_report_config_validates() -> None:
    with pytest.raises(ConfigError, match="threshold"):
        ReportConfig(threshold=0)
    with pytest.raises(ConfigError, match="hdi_prob"):
        ReportConfig(hdi_prob=1.0)


# -- metrics added for the report ----------------------------------------------------------------


def test_report_metrics_on_known_cases() -> None:
    labels = np.array([0, 1, 2, 2, -1])
    perfect = np.eye(3)[[0, 1, 2, 2, 0]]
    assert macro_f1(perfect, labels) == 1.0
    np.testing.assert_array_equal(confusion(perfect, labels), [[1, 0, 0], [0, 1, 0], [0, 0, 2], [1, 0, 0]])
    score = np.array([0.1, 0.9, 0.2, 0.3, 0.0])
    wrong = np.eye(3)[[0, 0, 2, 2, 0]]  # pixel 1 wrong, and it is the most uncertain
    coverage, acc = selective_curve(score, wrong, labels)
    np.testing.assert_allclose(coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(acc, [1.0, 1.0, 1.0, 0.75])
    assert selective_area(score, wrong, labels) == pytest.approx(3.75 / 4)


def test_reliability_curve_of_calibrated_probabilities() -> None:
    """Labels drawn from the probabilities themselves: every bin's band holds its confidence (5 bins)."""
    rng = np.random.default_rng(1)
    proba = rng.dirichlet([1.0, 1.0, 1.0], size=20000)
    labels = (proba.cumsum(-1) < rng.random((20000, 1))).sum(-1)
    curve = reliability_curve(proba, labels, n_bins=5, n_bootstrap=100, level=0.99, seed=0)
    assert curve.count.sum() == 20000 and (curve.count > 3000).all()
    assert ((curve.low <= curve.confidence + 0.01) & (curve.confidence - 0.01 <= curve.high)).all()
    np.testing.assert_allclose(curve.accuracy, curve.confidence, atol=0.03)


# -- command line and evaluation scripts ---------------------------------------------------------


def test_cli_report_without_truth(fitted_dir: Path, series: SimulatedSeries, tmp_path: Path) -> None:
    data = tmp_path / "frame0.npz"
    np.savez(data, x=series.spectra.data[0], energy=series.spectra.energy)
    out = tmp_path / "report"
    result = CliRunner().invoke(
        app,
        [
            "report",
            str(data),
            "--model",
            str(fitted_dir),
            "--out",
            str(out),
            "--draws",
            "10",
            "--no-baselines",
        ],
    )
    assert result.exit_code == 0, result.output
    assert "570 pixels in 1 frames" in result.output
    saved = json.loads((out / "metrics.json").read_text())
    assert saved["has_truth"] is False and saved["accuracy"] is None and saved["baselines"] == {}
    assert len(saved["silhouette_vae"]) == 1 and saved["silhouette_vae"][0] is not None
    assert len(_decoded_images((out / "report.html").read_text(encoding="utf-8"))) >= 7
    assert sorted(p.name for p in out.iterdir()) == ["metrics.json", "posterior.nc", "report.html"]


def test_cli_report_with_a_loop_record(fitted_dir: Path, series: SimulatedSeries, tmp_path: Path) -> None:
    """``--loop``: the active-learning section tabulates the rounds and plots their metrics."""
    from eelsprint.active.loop import LoopRecord

    data = tmp_path / "frame0.npz"
    np.savez(data, x=series.spectra.data[0], energy=series.spectra.energy)
    record = LoopRecord(tmp_path / "loop.json")
    for r, acc in enumerate((0.81, 0.86)):
        pixels = pd.DataFrame({"y": [r, 5], "x": [3, 7 + r]})
        record.start_round(pixels, ("y", "x"), strategy="bald")
        record.finish_round({"labelled": 0, "reacquired_used": 2 - r, "new_classes": []}, {"accuracy": acc})
    args = ["report", str(data), "--model", str(fitted_dir), "--draws", "10", "--no-baselines"]
    plain = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "plain")])
    looped = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "loop"), "--loop", str(record.path)])
    assert plain.exit_code == 0 and looped.exit_code == 0, (plain.output, looped.output)
    html = (tmp_path / "loop" / "report.html").read_text(encoding="utf-8")
    assert ">Active learning</h2>" in html and "BALD (nat)" in html and "Rounds of the loop record." in html
    n_plain = len(_decoded_images((tmp_path / "plain" / "report.html").read_text(encoding="utf-8")))
    assert len(_decoded_images(html)) == n_plain + 1  # the loop's curves


def test_cli_report_bad_truth_is_one_line(fitted_dir: Path, series: SimulatedSeries, tmp_path: Path) -> None:
    data = tmp_path / "frame0.npz"
    np.savez(data, x=series.spectra.data[0, :4], energy=series.spectra.energy)
    truth = tmp_path / "truth.npz"
    np.savez(truth, label=np.zeros(7, int))
    result = CliRunner().invoke(
        app, ["report", str(data), "-m", str(fitted_dir), "-o", str(tmp_path / "r"), "--truth", str(truth)]
    )
    assert result.exit_code != 0
    assert isinstance(result.exception, InputDataError)
    assert "has 7 entries but the data have 120 pixels" in str(result.exception)
    assert not (tmp_path / "r").exists()


def test_evaluation_report_script(fitted_dir: Path, tmp_path: Path) -> None:
    args = [
        "--model",
        str(fitted_dir),
        "--out",
        str(tmp_path / "r"),
        "--frames",
        "1",
        "--shape",
        "8",
        "10",
        "--draws",
        "10",
        "--tsne-points",
        "40",
    ]
    metrics = _load_script("report").main(args)
    assert metrics["n_pixels"] == 80 and metrics["has_truth"] is True
    assert (tmp_path / "r" / "report.html").is_file()


def test_model_card_metrics_script(
    fitted_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "card.json"
    args = [
        "--model",
        str(fitted_dir),
        "--seeds",
        "1",
        "2",
        "--frames",
        "1",
        "--shape",
        "8",
        "10",
        "--json",
        str(out),
    ]
    result = _load_script("model_card_metrics").main(args)
    assert json.loads(out.read_text()) == json.loads(json.dumps(result))
    assert result["seeds"] == [1, 2] and len(result["per_seed"]) == 2
    for name, row in result["summary"].items():  # the summary is of the per-seed rows
        for key in ("accuracy", "nll", "ece"):
            values = [s[name][key] for s in result["per_seed"]]
            assert row[key]["mean"] == pytest.approx(np.mean(values)), (name, key)
            assert row[key]["sd"] == pytest.approx(np.std(values, ddof=1)), (name, key)
    # 80 pixels only: the one-hot peak-ratio baseline pays 27.6 nats per error; measured on the full
    # card (6 frames): 0.077 vs 10.7 (evaluation/results/model_card_metrics.json)
    eelsprint, peak_ratio = result["summary"]["eelsprint"], result["summary"]["peak_ratio"]
    assert eelsprint["nll"]["mean"] < 0.2 * peak_ratio["nll"]["mean"]
    assert set(result["summary"]) == {
        "eelsprint",
        "eelsprint_no_encoder_variance",
        "eelsprint_plugin_softmax",
        "nearest_fingerprint",
        "pca_nearest_fingerprint",
        "peak_ratio",
        "pca_gp",
    }
    printed = capsys.readouterr().out
    assert "| eelsprint |" in printed and "±" in printed


# -- the acceptance test -------------------------------------------------------------------


@pytest.fixture(scope="module")
def default_run(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The default Config fitted on the simulator's default series (6 frames, seed 0), then reported."""
    series = simulate_series(n_frames=6, seed=0)
    clf = FingerprintClassifier(config=Config(), progress=False).fit(series.spectra, series.library)
    report = build_report(
        clf, [series.spectra], ["default"], series.labels, config=ReportConfig(tsne_points=300)
    )
    write_report(report, tmp_path_factory.mktemp("default-report"))
    return report.metrics


@pytest.mark.slow
def test_eelsprint_beats_every_baseline(default_run: dict[str, Any]) -> None:
    """Accuracy and NLL, eelsprint vs each baseline on the same 3,420 pixels.

    Seen (default Config, 2 CPU cores): eelsprint accuracy 0.961, NLL 0.105; best baseline
    pca_gp 0.959 / 0.319; nearest fingerprint 0.950 / 1.38; PCA + nearest fingerprint
    0.950 / 1.39; peak ratio 0.618 / 10.6. Run with ``-s`` to print them. The accuracy margin
    over pca_gp is thin on this one series (training seeds 1 and 2: 0.965 and 0.968).
    """
    m = default_run
    for name, row in {"eelsprint": m, **m["ablations"], **m["baselines"]}.items():
        print(f"{name}: accuracy {row['accuracy']:.4f}, NLL {row['nll']:.4f}, ECE {row['ece']:.4f}")
    for name, row in m["baselines"].items():
        assert m["accuracy"] > row["accuracy"], name
        assert m["nll"] < row["nll"], name


@pytest.mark.slow
def test_encoder_variance_lowers_ece(default_run: dict[str, Any]) -> None:
    """Issue 4: ECE below the uncalibrated softmax of the same classifier without the encoder variance.

    ``plugin_softmax`` is the softmax of the GP's mean at the raw encoder's latent mean (no encoder or
    GP variance); ``latent_mean_only`` keeps the GP's variance. Integrating the encoder's variance must
    also lower the NLL, a proper score, against both. Seen (default Config, 2 CPU cores): ECE 0.0085
    vs 0.0216 (plugin) and 0.0100 (latent mean only); NLL 0.105 vs 0.121 and 0.110. Training seeds 1
    and 2 gave ECE 0.0039 / 0.0048 vs plugin 0.018 / 0.017.
    """
    m, ablations = default_run, default_run["ablations"]
    assert m["ece"] < ablations["plugin_softmax"]["ece"]
    assert m["nll"] < ablations["plugin_softmax"]["nll"]
    assert m["nll"] < ablations["latent_mean_only"]["nll"]
