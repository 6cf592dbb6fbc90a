"""``eelsprint bench`` with tiny arguments: every pipeline runs and every key is a positive number."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
import torch

from eelsprint import FingerprintClassifier
from eelsprint.bench.run import BenchConfig, bench_spectra, format_table
from eelsprint.bench.timing import ISA_FLAGS, machine_info
from eelsprint.exceptions import ConfigError
from eelsprint.inference.metrics import accuracy
from eelsprint.inference.uncertainty import predict_exact, predict_fast
from tests.test_cli import run_cli
from tests.test_evaluation_scripts import load

KEYS = (
    "fast_spectra_per_s",
    "exact_spectra_per_s",
    "paper_style_spectra_per_s",
    "fast_vs_paper",
    "fast_b32_latency_ms",
    "frame570_latency_ms",
    "ceiling_fraction",
    "peak_rss_mb",
)
TINY = ["--n", "300", "--repeats", "1", "--formats", "onnx", "--no-aot", "--paper-samples", "5"]


def test_cli_bench_writes_every_key(fitted_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "bench.json"
    code, stdout, _ = run_cli(
        monkeypatch, capsys, "bench", "--model", str(fitted_dir), *TINY, "--json", str(out)
    )
    assert code == 0, stdout
    result = json.loads(out.read_text())
    for key in KEYS:
        assert isinstance(result[key], float) and result[key] > 0, key
    pipelines = result["pipelines"]
    expected = {"encoder_eager", "head_fp32", "head_bf16", "head_int8", "onnx", "fast_psi", "exact_mc"}
    assert expected | {"paper_style"} <= set(pipelines)
    assert all(row["spectra_per_s"] > 0 and row["b32_latency_ms"] > 0 for row in pipelines.values())
    assert result["fast_pipeline"] in result["fast_candidates"]
    assert result["fast_vs_paper"] == pytest.approx(
        result["fast_spectra_per_s"] / result["paper_style_spectra_per_s"]
    )
    # the paper's encoder is ~0.86 MFLOP per 240-channel spectrum; the head adds ~10 kFLOP
    assert 800_000 < result["flops_per_spectrum"] < 1_000_000
    # quality against an independent reference: exact Monte Carlo with 512 x 64 samples (not fast_psi)
    clf = FingerprintClassifier.load(fitted_dir, progress=False)
    x, labels = bench_spectra(clf, 300, seed=0)
    with torch.no_grad():
        loc, scale = clf.raw_encoder_(torch.as_tensor(x))
        reference = predict_exact(clf.gp_, loc, scale**2, 512, 64, torch.Generator().manual_seed(1)).proba
    assert labels is not None
    quality = result["quality"]
    for name in ("fast_psi", "exact_mc", "head_fp32"):
        # measured with models/default in place of the quick model: 1.0 for all and for the reference
        assert quality[name]["accuracy"] == pytest.approx(accuracy(reference.numpy(), labels), abs=0.01), name
    # measured with models/default: mean |dp| fast vs this reference 0.0008, exact (32 x 16) vs fast 0.0014
    fast = predict_fast(clf.gp_, loc, scale**2).proba
    assert float((fast - reference).abs().mean()) < 0.01
    assert quality["exact_mc"]["mean_abs_dp_vs_gp"] < 0.01
    assert "| head_fp32" in stdout and "fast = " in stdout and result["command"].startswith("eelsprint bench")


def test_evaluation_script_keeps_json_and_markdown(fitted_dir: Path, tmp_path: Path) -> None:
    args = ["--model", str(fitted_dir), *TINY, "--out", str(tmp_path), "--name", "b"]
    result = load("bench").main(args)
    assert json.loads((tmp_path / "b.json").read_text())["fast_pipeline"] == result["fast_pipeline"]
    note = (tmp_path / "b.md").read_text()
    assert "python evaluation/bench.py --model" in note and "| pipeline |" in note


def test_machine_info_reads_cores_and_isa() -> None:
    """The ISA flags agree with ``lscpu``'s flags (an independent reader of the same CPU)."""
    info = machine_info()
    assert info["physical_cores"] >= 1
    assert set(info["isa"]) == set(ISA_FLAGS)
    lscpu = shutil.which("lscpu")
    if lscpu is None:
        pytest.skip("lscpu not found")
    out = subprocess.run([lscpu], capture_output=True, text=True, check=True, env={"LC_ALL": "C"}).stdout
    flags = set(next(line for line in out.splitlines() if line.startswith("Flags:")).split()[1:])
    assert info["isa"] == {flag: flag in flags for flag in ISA_FLAGS}


def test_format_table_marks_the_fast_pipeline() -> None:
    row = {"spectra_per_s": 1000.0, "vs_paper": 2.0, "b32_latency_ms": 0.1, "frame570_latency_ms": 1.0}
    result = {
        "pipelines": {"head_fp32": row, "paper_style": row},
        "quality": {"head_fp32": {"accuracy": 0.9, "ece": 0.01, "mean_abs_dp_vs_gp": 0.002}},
        "fast_pipeline": "head_fp32",
        "machine": machine_info(),
        "settings": {"n": 10, "repeats": 1},
        **dict.fromkeys(KEYS, 1.0),
        "flops_per_spectrum": 1e6,
        "sgemm_gflops": 100.0,
    }
    table = format_table(result)
    assert "| head_fp32 (fast) | 1,000 | 2.0x | 0.100 | 1.00 | 0.9000 | 0.0100 | 0.0020 |" in table


def test_bench_settings_validate_themselves() -> None:
    with pytest.raises(ConfigError, match="tensorrt"):
        BenchConfig(formats=("tensorrt",))
    with pytest.raises(ConfigError, match=">= 1"):
        BenchConfig(n=0)
    with pytest.raises(ConfigError):
        BenchConfig(repeats=0)
