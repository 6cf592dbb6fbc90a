"""``eelsprint bench``: every inference path side by side, on the same spectra and machine.

Measured, with medians over repeats: throughput (spectra/s, in chunks) and batch-32 latency
of the eager encoder alone; the real-time head pipeline (eager float32, bfloat16 and int8
dynamic quantisation); each CPU export format; the fast (closed-form, "psi") and exact
(Monte Carlo) GP pipelines; and the paper-style pipeline (raw encoder mean + scikit-learn
``GaussianProcessClassifier()`` with its default kernel, trained on 100 samples per
fingerprint of the VAE's library latents). Also: ratios to the paper-style pipeline, the
fraction of the float32 compute ceiling (FLOPs per spectrum from the layer shapes x
throughput / sgemm FLOP/s measured in the same run), the latency of one 570-spectrum frame,
peak resident memory, and the accuracy/calibration cost of each pipeline against the GP.

"fast" in the results is the fastest full pipeline with uncertainty that eelsprint ships;
a reduced-precision variant qualifies only if its measured cost against the float32 head is
within :data:`REDUCED_PRECISION_BUDGET`. Timings exclude reading and preprocessing.
"""

from __future__ import annotations

import tempfile
import time
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eelsprint.bench.timing import (
    ISA_FLAGS,
    latency_ms,
    machine_info,
    peak_rss_mib,
    sgemm_gflops,
    throughput,
)
from eelsprint.classify import FingerprintClassifier
from eelsprint.exceptions import ConfigError
from eelsprint.inference.chunks import map_chunks
from eelsprint.inference.metrics import accuracy, expected_calibration_error, ood_auroc
from eelsprint.inference.runtime import CHUNKS, torch_threads
from eelsprint.inference.uncertainty import predict_exact, predict_fast
from eelsprint.models.head import RealtimeModel
from eelsprint.realtime.export import CPU_FORMATS, export

__all__ = [
    "REDUCED_PRECISION_BUDGET",
    "BenchConfig",
    "bench_spectra",
    "format_table",
    "machine_info",
    "run_bench",
]

FRAME = 570  # the paper's 19 x 30 scans
#: Largest cost against the float32 head for a bf16/int8 head to count as "fast".
REDUCED_PRECISION_BUDGET = {"mean_abs_dp": 0.005, "ece_delta": 0.005}
Pipeline = Callable[[torch.Tensor], tuple[Any, Any]]  # chunk -> (proba or None, epistemic or None)


@dataclass(frozen=True)
class BenchConfig:
    """What ``eelsprint bench`` measures.

    Attributes
    ----------
    n : int
        Spectra (default: the paper's data set size, 24 frames of 19 x 30).
    repeats : int
        Timed passes per pipeline; the median is reported.
    formats : tuple of str
        CPU export formats to measure.
    aot : bool
        Compile the ``pt2`` export with AOTInductor too.
    paper_samples : int
        Latent samples per fingerprint for the paper-style classifier (the paper: 100).
    chunk, chunk_bf16 : int
        Spectra per call of the real-time graph (float32 and int8; bfloat16).
    seed : int
    """

    n: int = 13680
    repeats: int = 5
    formats: tuple[str, ...] = CPU_FORMATS
    aot: bool = True
    paper_samples: int = 100
    chunk: int = CHUNKS["fp32"]
    chunk_bf16: int = CHUNKS["bf16"]
    seed: int = 0

    def __post_init__(self) -> None:
        if min(self.n, self.repeats, self.paper_samples, self.chunk, self.chunk_bf16) < 1:
            raise ConfigError("n, repeats, paper_samples, chunk and chunk_bf16 must be >= 1")
        unknown = set(self.formats) - set(CPU_FORMATS)
        if unknown:
            raise ConfigError(
                f"unknown CPU format(s) {sorted(unknown)}; expected some of {', '.join(CPU_FORMATS)}"
            )


def bench_spectra(clf: FingerprintClassifier, n: int, seed: int) -> tuple[np.ndarray, np.ndarray | None]:
    """``n`` model-ready spectra and labels: the simulator's if it fits the model, else noisy library."""
    from eelsprint.data.simulate import ENERGY, simulate_series

    if clf.energy_.shape == ENERGY.shape and np.allclose(clf.energy_, ENERGY):
        series = simulate_series(n_frames=-(-n // FRAME), seed=seed + 1)
        x = clf.prepare(series.spectra).flat()
        return x[:n].astype(np.float32), series.labels.reshape(-1)[:n]
    rng = np.random.default_rng(seed)
    lib = clf.library_.spectra
    x = lib[rng.integers(len(lib), size=n)]
    x = x + rng.normal(0, 0.05 * float(np.abs(lib).max() or 1.0), x.shape)
    return x.astype(np.float32), None


def _paper_classifier(clf: FingerprintClassifier, samples: int, seed: int) -> Any:
    """scikit-learn ``GaussianProcessClassifier()`` on ``samples`` VAE latent draws per fingerprint."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.gaussian_process import GaussianProcessClassifier

    from eelsprint.inference.train import latent_training_set

    lib = clf.library_
    z, y = latent_training_set(
        clf.vae_.encoder,
        torch.as_tensor(lib.spectra, dtype=torch.float32),
        torch.as_tensor(lib.class_index),
        samples,
        seed,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return GaussianProcessClassifier(random_state=seed).fit(z.numpy(), y.numpy())


def _pipelines(
    clf: FingerprintClassifier, config: BenchConfig, tmp: Path, log: Callable[[str], None]
) -> dict[str, tuple[Pipeline, int]]:
    """Every pipeline as (chunk -> (proba, epistemic), chunk size)."""
    encoder, gp = clf.raw_encoder_, clf.gp_
    inf = clf.config_.inference
    generator = torch.Generator().manual_seed(config.seed)

    def moments(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, scale = encoder(x)
        return loc, scale * scale

    def head(model: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]) -> Pipeline:
        return lambda x: (lambda out: (out[0], out[3]))(model(x))

    def fast(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = predict_fast(gp, *moments(x))
        return p.proba, p.epistemic

    def exact(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        p = predict_exact(gp, *moments(x), inf.mc_samples, inf.f_samples, generator)
        return p.proba, p.epistemic

    log(f"paper-style: GaussianProcessClassifier() on {config.paper_samples} samples per fingerprint")
    start = time.perf_counter()
    gpc = _paper_classifier(clf, config.paper_samples, config.seed)
    log(f"  fitted in {time.perf_counter() - start:.1f} s")

    def encoder_only(x: torch.Tensor) -> tuple[None, None]:
        encoder(x)
        return None, None

    pipes: dict[str, tuple[Pipeline, int]] = {
        "encoder_eager": (encoder_only, config.chunk),
        "head_fp32": (head(clf.realtime_model("fp32")), config.chunk),
        "head_bf16": (head(clf.realtime_model("bf16")), config.chunk_bf16),
        "head_int8": (head(clf.realtime_model("int8")), config.chunk),
    }
    for fmt in config.formats:
        start = time.perf_counter()
        exported = export(clf, fmt, tmp / fmt, aot=config.aot)
        name = "pt2_aoti" if exported.meta.get("aoti") else fmt
        log(
            f"export {name}: {time.perf_counter() - start:.1f} s, "
            f"max |dp| on the probe {exported.max_diff['proba']:.1e}"
        )
        pipes[name] = (head(exported), config.chunk)
    pipes["fast_psi"] = (fast, inf.batch_size)
    pipes["exact_mc"] = (exact, inf.batch_size)
    pipes["paper_style"] = (
        lambda x: (torch.from_numpy(gpc.predict_proba(encoder(x)[0].numpy())), None),
        16384,
    )
    return pipes


def _quality(outputs: dict[str, tuple[Any, ...]], labels: np.ndarray | None) -> dict[str, dict[str, float]]:
    """Accuracy, ECE, OOD AUROC of epistemic, and mean |dp| against the GP (fast) and the fp32 head."""
    ref, head = outputs["fast_psi"][0].numpy(), outputs["head_fp32"][0].numpy()
    result = {}
    for name, (proba, epistemic) in outputs.items():
        if proba is None:
            continue
        p = proba.numpy()
        row = {
            "mean_abs_dp_vs_gp": float(np.abs(p - ref).mean()),
            "mean_abs_dp_vs_head": float(np.abs(p - head).mean()),
        }
        if labels is not None:
            row |= {"accuracy": accuracy(p, labels), "ece": expected_calibration_error(p, labels)}
            if epistemic is not None and (labels < 0).any():
                row["ood_auroc_epistemic"] = ood_auroc(epistemic.numpy(), labels)
        result[name] = row
    return result


def run_bench(
    clf: FingerprintClassifier,
    config: BenchConfig | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Measure every pipeline; see the module docstring.

    Parameters
    ----------
    clf : FingerprintClassifier
        A fitted classifier on the CPU (e.g. :meth:`FingerprintClassifier.load_default`).
        One without a distilled head gets one (:meth:`FingerprintClassifier.distil_head`
        on the first 4,096 bench spectra).
    config : BenchConfig, optional
    log : callable
        Progress messages.

    Returns
    -------
    dict
        JSON-ready results; the keys of the issue (``fast_spectra_per_s``,
        ``exact_spectra_per_s``, ``paper_style_spectra_per_s``, ``fast_vs_paper``,
        ``fast_b32_latency_ms``, ``frame570_latency_ms``, ``ceiling_fraction``,
        ``peak_rss_mb``) plus ``pipelines``, ``quality``, ``machine`` and settings.
    """
    config = config or BenchConfig()
    if clf.device_.type != "cpu":
        raise ConfigError(
            f"bench times the CPU pipelines; load the model with device='cpu', not {clf.device_}"
        )
    x_np, labels = bench_spectra(clf, config.n, config.seed)
    x = torch.from_numpy(x_np)
    if clf.head_ is None:  # a model saved before the head existed
        log("model has no distilled head: distilling one on the first 4,096 bench spectra")
        clf.distil_head(x_np[:4096])
    machine = machine_info()
    log(
        f"{machine['cpu']}: {machine['physical_cores']} physical cores; ISA "
        + ", ".join(f for f, on in machine["isa"].items() if on)
    )
    with torch_threads(), tempfile.TemporaryDirectory() as tmp:
        gflops = sgemm_gflops()
        pipes = _pipelines(clf, config, Path(tmp), log)
        rows, outputs = {}, {}
        for name, (fn, chunk) in pipes.items():
            with torch.inference_mode():
                out = map_chunks(fn, x, chunk=chunk)  # warm-up, kept for quality
            if out[0] is not None:
                outputs[name] = out
            slow = name in ("fast_psi", "exact_mc", "paper_style")
            rows[name] = {
                "spectra_per_s": throughput(fn, x, chunk, min(config.repeats, 3) if slow else config.repeats),
                "b32_latency_ms": latency_ms(fn, x[:32], budget_s=0.1 * config.repeats),
                "frame570_latency_ms": latency_ms(fn, x[:FRAME], budget_s=0.2 * config.repeats, calls=50),
            }
            log(
                f"  {name:<14} {rows[name]['spectra_per_s']:>12,.0f} spectra/s  "
                f"b32 {rows[name]['b32_latency_ms']:.3f} ms"
            )
    quality = _quality(outputs, labels)
    paper = rows["paper_style"]["spectra_per_s"]
    for row in rows.values():
        row["vs_paper"] = row["spectra_per_s"] / paper
    candidates = [n for n in rows if n not in ("encoder_eager", "fast_psi", "exact_mc", "paper_style")]
    for name in ("head_bf16", "head_int8"):
        q, q0 = quality[name], quality["head_fp32"]
        cost_ok = q["mean_abs_dp_vs_head"] <= REDUCED_PRECISION_BUDGET["mean_abs_dp"] and (
            "ece" not in q or abs(q["ece"] - q0["ece"]) <= REDUCED_PRECISION_BUDGET["ece_delta"]
        )
        if not cost_ok:
            candidates.remove(name)
    fast = max(candidates, key=lambda n: rows[n]["spectra_per_s"])
    lowest = min(candidates, key=lambda n: rows[n]["b32_latency_ms"])
    net = clf.realtime_model()
    flops = net.flops_per_spectrum(x.shape[1]) if isinstance(net, RealtimeModel) else 0
    return {
        "fast_pipeline": fast,
        "fast_spectra_per_s": rows[fast]["spectra_per_s"],
        "exact_spectra_per_s": rows["exact_mc"]["spectra_per_s"],
        "paper_style_spectra_per_s": paper,
        "fast_vs_paper": rows[fast]["vs_paper"],
        "fast_b32_latency_ms": rows[fast]["b32_latency_ms"],
        "frame570_latency_ms": rows[fast]["frame570_latency_ms"],
        "lowest_b32_latency": {"pipeline": lowest, "ms": rows[lowest]["b32_latency_ms"]},
        "ceiling_fraction": flops * rows[fast]["spectra_per_s"] / (gflops * 1e9),
        "peak_rss_mb": peak_rss_mib(),
        "sgemm_gflops": gflops,
        "flops_per_spectrum": flops,
        "ceiling_spectra_per_s": gflops * 1e9 / flops if flops else None,
        "pipelines": rows,
        "quality": quality,
        "reduced_precision_budget": REDUCED_PRECISION_BUDGET,
        "fast_candidates": candidates,
        "machine": machine,
        "settings": asdict(config) | {"n": len(x), "labelled": labels is not None},
    }


def format_table(result: dict[str, Any]) -> str:
    """The results as a markdown table (one row per pipeline) with the headline figures below."""
    lines = [
        "| pipeline | spectra/s | vs paper | batch-32 ms | 570-frame ms | accuracy | ECE | dp vs GP |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, row in result["pipelines"].items():
        q = result["quality"].get(name, {})
        cells = [f"{q[k]:.4f}" if k in q else "-" for k in ("accuracy", "ece", "mean_abs_dp_vs_gp")]
        mark = " (fast)" if name == result["fast_pipeline"] else ""
        lines.append(
            f"| {name}{mark} | {row['spectra_per_s']:,.0f} | {row['vs_paper']:.1f}x "
            f"| {row['b32_latency_ms']:.3f} | {row['frame570_latency_ms']:.2f} | {' | '.join(cells)} |"
        )
    m = result["machine"]
    isa = ", ".join(f for f, on in m["isa"].items() if on) or "none of " + ", ".join(ISA_FLAGS)
    lines += [
        "",
        f"fast = {result['fast_pipeline']}: {result['fast_spectra_per_s']:,.0f} spectra/s "
        f"({result['fast_vs_paper']:.0f}x paper-style), {result['ceiling_fraction']:.0%} of the fp32 ceiling "
        f"({result['flops_per_spectrum'] / 1e6:.2f} MFLOP/spectrum, "
        f"sgemm {result['sgemm_gflops']:.0f} GFLOP/s); batch-32 {result['fast_b32_latency_ms']:.3f} ms; "
        f"570-spectrum frame {result['frame570_latency_ms']:.2f} ms; "
        f"exact {result['exact_spectra_per_s']:,.0f} spectra/s; peak RSS {result['peak_rss_mb']:.0f} MB"
        + (
            f"; lowest batch-32 latency {low['ms']:.3f} ms ({low['pipeline']})"
            if (low := result.get("lowest_b32_latency"))
            else ""
        ),
        f"machine: {m['cpu']}, {m['physical_cores']} physical cores ({m['usable_cpus']} usable), ISA: {isa}; "
        f"torch {m['torch']}, {m['torch_threads']} threads; n = {result['settings']['n']}, "
        f"medians of {result['settings']['repeats']} repeats",
    ]
    return "\n".join(lines)
