"""Evaluation scripts run with tiny arguments (like pyro's tests/test_examples.py)."""

from __future__ import annotations

import argparse
import importlib.util
import json
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

from eelsprint import FingerprintClassifier
from eelsprint.data.simulate import simulate_series
from eelsprint.models import vae as vae_module
from eelsprint.models.dropout import BitDropout
from eelsprint.report.baselines import nearest_fingerprint

EVALUATION = Path(__file__).resolve().parents[1] / "evaluation"


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, EVALUATION / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_bench_fit_smoke(tmp_path: Path) -> None:
    out = tmp_path / "fit.json"
    result = load("bench_fit").main(["--frames", "1", "--epochs", "1", "--repeats", "1", "--json", str(out)])
    saved = json.loads(out.read_text())
    assert saved == result
    assert saved["spectra"] == 570 and saved["channels"] == 240
    assert (
        saved["fit_s"] > 0
        and saved["classify_fast_spectra_per_s"] > 0
        and saved["classify_exact_spectra_per_s"] > 0
    )


@pytest.mark.slow  # three fits of one frame, one epoch each
def test_dropout_ab_smoke_times_three_fits_and_restores_the_layers(tmp_path: Path) -> None:
    out = tmp_path / "ab.json"
    result = load("dropout_ab").main(["--frames", "1", "--epochs", "1", "--json", str(out)])
    assert json.loads(out.read_text()) == result
    fits = result["fit_s"]
    assert set(fits) == {"nn.Dropout", "BitDropout", "nn.Dropout again"} and min(fits.values()) > 0
    ratio = (fits["nn.Dropout"] + fits["nn.Dropout again"]) / 2 / fits["BitDropout"]
    assert result["speedup_vs_mean_baseline"] == pytest.approx(ratio, abs=0.01)
    assert vae_module.BitDropout is BitDropout  # the swap does not outlive the script


def test_train_default_model_smoke(tmp_path: Path) -> None:
    path = load("train_default_model").main(["--out", str(tmp_path / "m"), "--frames", "1", "--epochs", "1"])
    clf = FingerprintClassifier.load(path, progress=False)
    assert list(clf.classes_) == ["F50", "F25", "F12.5", "F0"]


def test_seed_study_smoke(tmp_path: Path) -> None:
    out = tmp_path / "seeds.json"
    result = load("seed_study").main(
        ["--seeds", "0", "1", "--frames", "1", "--epochs", "1", "--json", str(out)]
    )
    assert set(result["per_seed"]) == {0, 1}
    for key, (mean, sd) in result["mean_sd"].items():  # the summary is of the per-seed rows
        values = [result["per_seed"][seed][key] for seed in (0, 1)]
        assert mean == pytest.approx(np.mean(values)) and sd == pytest.approx(np.std(values)), key
    saved = json.loads(out.read_text())
    assert saved["test_series_seed"] == 11 and saved["mean_sd"] == json.loads(json.dumps(result["mean_sd"]))
    # the nearest-fingerprint baseline is recomputed independently on the same held-out series
    test = simulate_series(n_frames=1, seed=11)
    y = test.labels.reshape(-1)
    nearest = nearest_fingerprint(test.spectra.flat(), test.library)
    assert saved["nearest_fingerprint_accuracy"] == pytest.approx((nearest[y >= 0] == y[y >= 0]).mean())


def test_auroc_is_nan_when_undefined() -> None:
    from eelsprint.inference.metrics import error_auroc, ood_auroc

    assert np.isnan(ood_auroc(np.array([0.1, 0.2]), np.array([0, 1])))
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    assert np.isnan(error_auroc(np.array([0.1, 0.2]), proba, np.array([0, 1])))
    assert ood_auroc(np.array([0.1, 0.9]), np.array([0, -1])) == 1.0


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: see the gpu test")
def test_gpu_cuda_check_says_no_cuda(capsys: pytest.CaptureFixture[str]) -> None:
    assert load("gpu_cuda_check").main([]) == {"cuda": False}
    assert capsys.readouterr().out.startswith("no CUDA: torch ")


@pytest.mark.gpu
def test_gpu_cuda_check_smoke(tmp_path: Path) -> None:
    """Small settings. Same weights on CUDA and CPU: fast and head within mean |dp| 1e-3 (TF32
    convolutions allowed), labels agree on >= 99 %; the compiled graph matches eager to 1e-3.

    15 epochs: with 2 (and 5) the latent fails its own library on one 570-spectrum frame and the
    model falls back to the spectra (no head); 10 was the least that passed on the CPU.
    """
    out = tmp_path / "cuda.json"
    args = ["--frames", "1", "--epochs", "15", "--gp-iterations", "50", "--calls", "10", "--json", str(out)]
    result = load("gpu_cuda_check").main(args)
    assert json.loads(out.read_text())["cuda"] is True
    assert result["spectral_fallback"] == {"cpu": False, "cuda": False}
    for mode in ("fast", "head"):
        same = result["same_weights_cuda_vs_cpu"][mode]
        assert same["mean_abs_dp"] < 1e-3 and same["label_agreement"] >= 0.99, (mode, same)
    graph = result["realtime_graph_cuda"]
    assert graph["compiled_vs_eager_max_abs_dp"] < 1e-3
    assert graph["compiled"]["spectra_per_s_13680"] > 0 and graph["eager"]["b32_latency_ms"] > 0


@pytest.mark.slow  # ~100 s on 2 shared cores: three small fits (simulator, Cu, LSMO) and sklearn's GPC
def test_robustness_smoke(tmp_path: Path) -> None:
    out, md = tmp_path / "r.json", tmp_path / "r.md"
    args = ["--libraries", "simulator", "cu", "--seeds", "0", "--frames", "1", "--shape", "8", "10"]
    args += [
        "--doses",
        "10",
        "--epochs",
        "1",
        "--gp-iterations",
        "20",
        "--json",
        str(out),
        "--markdown",
        str(md),
    ]
    result = load("robustness").main(args)
    assert json.loads(out.read_text())["command"].endswith("--markdown " + str(md))
    sim = result["libraries"]["simulator"]
    assert set(sim["doses"]) == {"10.0", "30.0"}  # the sweep's dose and the paper's
    paper = sim["doses"]["30.0"]
    assert set(paper["baselines"]) == {
        "nearest_fingerprint",
        "pca_nearest",
        "pca_gp",
        "mlls",
        "supervised_ceiling",
    }
    assert 0.0 <= paper["eelsprint_summary"]["accuracy"]["mean"] <= 1.0
    assert set(paper["eelsprint"]["0"]["ood_auroc_epistemic"]) <= {"foreign_edge", "extra_feature"}
    assert set(result["done_when"]["simulator"]) >= {"ece <= 0.02", "accuracy >= mlls"}
    assert "| mlls |" in md.read_text()
    if (load("robustness").DATA / "real" / "lsmo").is_dir():  # the real files: skipped when absent
        assert "cu" in result["libraries"] and result["lsmo"]["nearest_fingerprint_split"] == [24, 16]


def test_robustness_config_overrides() -> None:
    rob = load("robustness")
    args = argparse.Namespace(set=["nuisance.mix_share=0.3", "model.samples_per_fingerprint=256"])
    args.epochs = args.gp_iterations = None
    cfg = rob.config((490.0, 520.0), "none", None, args, 7)
    assert (cfg.nuisance.mix_share, cfg.model.samples_per_fingerprint, cfg.train.seed) == (0.3, 256, 7)
    assert cfg.preprocess.background_window == (490.0, 520.0)
    for bad in ("mix_share=0.3", "nuisance.mix_share", "nuisance.mix_share=abc"):
        with pytest.raises(ValueError, match=rf"^--set '{bad}': expected SECTION.KEY=JSON"):
            rob.overrides([bad])


def test_variants_table_rows_read_each_run(tmp_path: Path) -> None:
    """``variants_table.py``: a run appended with --add becomes rows and LSMO lines with its numbers."""
    summary = {m: {"mean": v, "sd": 0.01} for m, v in (("accuracy", 0.8), ("ece", 0.03), ("nll", 0.4))}
    runs = {
        "0": {"accuracy": 0.79, "labels_from": "latent GP"},
        "1": {"accuracy": 0.81, "labels_from": "latent GP"},
    }
    dose = {"30.0": {"eelsprint_summary": summary, "eelsprint": runs}}
    lsmo = {
        "per_seed": {
            "1": {"agreement_with_nearest": 0.95, "either_high_where_disagree": 1.0},
            "0": {"agreement_with_nearest": 1.0, "either_high_where_disagree": None},
        }
    }
    run = {
        "command": "python robustness.py --set x.y=1",
        "libraries": {"mxene": {"doses": dose}},
        "lsmo": lsmo,
    }
    (tmp_path / "base.json").write_text(json.dumps(run))
    (tmp_path / "run.json").write_text(json.dumps(run))
    (tmp_path / "v.json").write_text(json.dumps({"note": "Why these runs.", "variants": {}}))  # fmt: skip
    paths = ["--base", str(tmp_path / "base.json"), "--variants", str(tmp_path / "v.json")]
    md = load("variants_table").main(
        [*paths, "--markdown", str(tmp_path / "v.md"), "--add", f"x 1={tmp_path / 'run.json'}"]
    )
    assert md == (tmp_path / "v.md").read_text() and "Why these runs." in md
    assert md.count("| mxene | 0.800 +- 0.010 (0.790-0.810) | 0.030 +- 0.010 | 0.400 | latent GP |") == 2
    assert "- x 1: agreement 1.000, 0.950; either high where they disagree -, 1.00" in md
    assert list(json.loads((tmp_path / "v.json").read_text())["variants"]) == ["x 1"]
    with pytest.raises(SystemExit):
        load("variants_table").main([*paths, "--markdown", str(tmp_path / "w.md"), "--add", "no-equals-sign"])
    assert not (tmp_path / "w.md").exists()


def test_lsmo_condition_reads_each_disagreeing_pixel() -> None:
    """'Wherever they disagree, epistemic or OOD is high' is read pixel by pixel (their union)."""
    rob = load("robustness")
    # 5 disagreeing pixels: epistemic high at 4, ood_score at 2, together at all 5
    run = {"agreement_with_nearest": 0.875, "own_pixels_correct": 10, "epistemic_high_where_disagree": 0.8,
           "ood_score_high_where_disagree": 0.4, "either_high_where_disagree": 1.0}  # fmt: skip
    assert rob.either_high(run) == 1.0
    assert rob.done_when({"libraries": {}, "lsmo": {"per_seed": {"0": run}}})["lsmo"] == {
        "own pixels own class": True,
        "agreement >= 0.9": False,
        "epistemic/ood high where they disagree": True,
    }
    older = {k: v for k, v in run.items() if k != "either_high_where_disagree"}  # recorded before
    assert rob.either_high(older) == 0.8
    missed = run | {"either_high_where_disagree": 0.8}
    assert (
        rob.done_when({"libraries": {}, "lsmo": {"per_seed": {"0": missed}}})["lsmo"][
            "epistemic/ood high where they disagree"
        ]
        is False
    )


def test_restart_study_selection_follows_the_score(tmp_path: Path) -> None:
    """``restart_study.py``: a score that ranks seeds exactly as accuracy does keeps the best of
    each group (range shrinks, mean rises); one that ranks them backwards keeps the worst."""
    study = load("restart_study")
    acc = np.linspace(0.80, 0.84, 10)  # seed i: accuracy 0.80 + 0.04 i / 9
    rows = [
        {
            "seed": i, "accuracy": float(a), "ece": 0.02, "nll": 0.4,
            "check": {"self_consistency": float(a), "latent_accuracy": float(1 - a)},
            "copies_nll_pure": float(1 - a), "copies_nll_mixed": float(i * 7 % 10),
            "copies_acc_pure": float(a), "copies_acc_mixed": 0.8,
        }
        for i, a in enumerate(acc)
    ]  # fmt: skip
    part = {"command": "python restart_study.py --seeds 0", "measured": {"toy": rows}}
    (tmp_path / "part.json").write_text(json.dumps(part))
    out = ["--json", str(tmp_path / "r.json"), "--markdown", str(tmp_path / "r.md")]
    result = study.main(["--from-json", str(tmp_path / "part.json"), *out])
    toy = result["analysis"]["toy"]
    single, good, bad = toy["single"], toy["copies_nll_pure"], toy["latent_accuracy"]
    assert good["spearman"] == pytest.approx(1.0) and bad["spearman"] == pytest.approx(-1.0)
    # 3 of seeds 0-9: E[max index] = sum k C(k, 2) / C(10, 3) = 7.25 -> 0.8322; E[min] 1.75 -> 0.8078
    assert good["best_of_3"]["mean_accuracy"] == pytest.approx(0.8322, abs=0.002)
    assert bad["best_of_3"]["mean_accuracy"] == pytest.approx(0.8078, abs=0.002)
    assert single["mean_accuracy"] == pytest.approx(0.82, abs=0.002)
    assert good["best_of_3"]["expected_range"] < single["expected_range"] - 0.01
    assert "| copies_nll_pure | +1.00 | 2 |" in (tmp_path / "r.md").read_text()


def test_dose_shift_scores_library_pixels_only() -> None:
    proba = np.array([[0.7, 0.3], [0.2, 0.8], [0.5, 0.5]])
    got = load("dose_shift").score(proba, np.array([0, 0, -1]))
    assert got["accuracy"] == pytest.approx(0.5) and got["confidence"] == pytest.approx(0.75)
    assert got["nll"] == pytest.approx(-(np.log(0.7) + np.log(0.2)) / 2)


def test_dose_shift_smoke(tmp_path: Path) -> None:
    out, md = tmp_path / "d.json", tmp_path / "d.md"
    argv = [
        "--libraries",
        "simulator",
        "--seeds",
        "0",
        "--frames",
        "1",
        "--shape",
        "8",
        "10",
        "--epochs",
        "1",
    ]
    argv += ["--gp-iterations", "20", "--doses", "10", "100", "--fit-doses", "10"]
    result = load("dose_shift").main([*argv, "--json", str(out), "--markdown", str(md)])
    assert json.loads(out.read_text())["summary"] == result["summary"]
    rows = result["runs"]
    assert [(r["fit_dose"], r["dose"]) for r in rows] == [(10.0, 10.0), (10.0, 100.0)]
    assert rows[1]["accuracy"] > rows[0]["accuracy"] + 0.05  # same truth, a tenth of the noise
    assert "| 10 | 10 (fitted here) | 1 |" in md.read_text()  # noise vs fit: 1 at the fitted dose
    merged = load("dose_shift").main(
        ["--merge", str(out), str(out), "--json", str(out), "--markdown", str(md)]
    )
    assert len(merged["runs"]) == 4 and {r["seeds"] for r in merged["summary"]} == {2}
    assert merged["summary"][1]["accuracy"]["mean"] == pytest.approx(rows[1]["accuracy"])
    assert "training seeds 2 (simulator)" in md.read_text()


def test_active_loop_reach_reads_the_mean_curve_between_grid_points() -> None:
    loop = load("active_loop")
    ns = np.array([0.0, 24.0, 48.0])
    acc = np.array([[0.70, 0.74, 0.76], [0.70, 0.72, 0.78]])  # mean 0.70, 0.73, 0.77
    assert loop.pixels_to_reach({"a": acc}, ns, 0.75) == {"a": 48.0}
    assert loop.interpolated_reach(acc, ns, 0.75) == pytest.approx(36.0)
    assert loop.interpolated_reach(acc, ns, 0.70) == 0.0 and loop.interpolated_reach(acc, ns, 0.8) is None


def test_active_loop_smoke(tmp_path: Path) -> None:
    argv = ["--library", "simulator", "--seeds", "0", "--frames", "1", "--shape", "10", "12", "--rounds", "2"]
    argv += ["--k", "4", "--epochs", "1", "--gp-iterations", "20", "--strategies", "bald", "random"]
    paths = [tmp_path / f"a.{ext}" for ext in ("json", "md", "png")]
    result = load("active_loop").main(
        [*argv, "--json", str(paths[0]), "--markdown", str(paths[1]), "--figure", str(paths[2])]
    )
    assert json.loads(paths[0].read_text())["summary"] == result["summary"]
    summary = result["summary"]
    assert summary["n_reacquired"] == [0.0, 4.0, 8.0]
    curves = result["runs"]["random"][0]
    assert [p["n"] for p in curves] == [0, 4, 8] and all(0 <= p["accuracy"] <= 1 for p in curves)
    assert summary["to_reach_random_final"]["random"]["share_of_random"] == 1.0
    assert "| bald |" in paths[1].read_text() and paths[2].stat().st_size > 1000
