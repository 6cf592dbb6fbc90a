"""The estimator on CUDA: fit and classify with ``device="cuda"``, checked against the CPU.

1. Fits the same small model (simulated series, seed 0) with ``device="cpu"`` and
   ``device="cuda"``.
2. Classifies a fresh series in modes fast, exact and head with each, and states
   (a) the CPU-fitted model run on CUDA against itself on the CPU (same weights: only the
   arithmetic differs, so fast and head should agree to mean |dp| < 1e-3; exact also draws
   from another generator stream, so it differs by its Monte Carlo noise, ~1e-2),
   (b) the CUDA-fitted model against the CPU-fitted one (different random streams, so two
   models: accuracy of each and label agreement).
3. Times the real-time graph (raw encoder + distilled head, float32) on CUDA, eager and under
   ``torch.compile``: batch-32 latency and throughput on one 13,680-spectrum batch (the
   paper's data set), synchronised, medians.

On a machine without CUDA it prints "no CUDA" and exits 0. About 1-2 minutes on an H100.

Usage::

    python evaluation/gpu_cuda_check.py --json OUT.json
    python evaluation/gpu_cuda_check.py --frames 1 --epochs 2 --gp-iterations 20   # smoke test
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eelsprint import Config, FingerprintClassifier
from eelsprint.data.atomic import write_json
from eelsprint.data.simulate import simulate_series
from eelsprint.inference.metrics import accuracy
from eelsprint.inference.pipeline import spectral_prior

MODES = ("fast", "exact", "head")
PAPER_N = 13680


def _timed_ms(fn: Callable[[], Any], calls: int) -> float:
    """Median wall time of ``fn`` in ms, CUDA synchronised around each call (after 5 warm-ups)."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(calls):
        torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _compare(a: np.ndarray, b: np.ndarray) -> dict[str, float]:
    diff = np.abs(a - b)
    return {
        "mean_abs_dp": float(diff.mean()),
        "max_abs_dp": float(diff.max()),
        "label_agreement": float((a.argmax(-1) == b.argmax(-1)).mean()),
    }


def _graph_timings(clf: FingerprintClassifier, x: np.ndarray, calls: int) -> dict[str, Any]:
    """Eager and compiled real-time graph on CUDA: batch-32 latency and 13,680-batch throughput."""
    graph = clf.realtime_model("fp32")
    spectra = torch.as_tensor(np.resize(x, (PAPER_N, x.shape[1])), dtype=torch.float32, device=clf.device_)
    result: dict[str, Any] = {}
    start = time.perf_counter()
    compiled = torch.compile(graph)
    with torch.inference_mode():
        reference = graph(spectra[:32])[0]
        compiled_out = compiled(spectra[:32])[0]
        result["compile_s_batch32"] = time.perf_counter() - start
        result["compiled_vs_eager_max_abs_dp"] = float((compiled_out - reference).abs().max())
        for name, fn in (("eager", graph), ("compiled", compiled)):
            b32 = _timed_ms(lambda fn=fn: fn(spectra[:32]), calls)
            full = _timed_ms(lambda fn=fn: fn(spectra), max(5, calls // 20))
            result[name] = {"b32_latency_ms": b32, "spectra_per_s_13680": PAPER_N / (full / 1e3)}
    return result


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=2, help="simulated frames to fit on (570 spectra each)")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--gp-iterations", type=int, default=300)
    parser.add_argument("--calls", type=int, default=200, help="timed batch-32 calls per graph")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    if not torch.cuda.is_available():
        print(f"no CUDA: torch {torch.__version__} sees no GPU here; nothing to check (needs a CUDA machine)")
        return {"cuda": False}
    config = Config.from_dict(
        {"train": {"epochs": args.epochs, "raw_epochs": args.epochs, "gp_iterations": args.gp_iterations}}
    )
    train = simulate_series(n_frames=args.frames, seed=0)
    test = simulate_series(n_frames=args.frames, seed=11)
    labels = test.labels.reshape(-1)
    result: dict[str, Any] = {
        "cuda": True,
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "settings": vars(args) | {"json": str(args.json)},
    }
    models, fit_s = {}, {}
    for device in ("cpu", "cuda"):
        start = time.perf_counter()
        clf = FingerprintClassifier(config=config, progress=False, device=device)
        models[device] = clf.fit(train.spectra, train.library)
        fit_s[device] = time.perf_counter() - start
    result["fit_s"] = fit_s
    # a model whose latent failed its own library predicts through the spectral fallback: no head
    fallback = {d: spectral_prior(clf.diagnostics_) is not None for d, clf in models.items()}
    result["spectral_fallback"] = fallback
    modes = {d: MODES[:2] if fallback[d] else MODES for d in models}
    proba = {
        device: {m: clf.predict_proba(test.spectra, mode=m).reshape(-1, 4) for m in modes[device]}
        for device, clf in models.items()
    }
    models["cpu"].set_params(device="cuda")  # the CPU-fitted weights, run on CUDA
    on_cuda = {m: models["cpu"].predict_proba(test.spectra, mode=m).reshape(-1, 4) for m in modes["cpu"]}
    models["cpu"].set_params(device="cpu")
    result["same_weights_cuda_vs_cpu"] = {m: _compare(on_cuda[m], proba["cpu"][m]) for m in modes["cpu"]}
    both = [m for m in MODES if m in modes["cpu"] and m in modes["cuda"]]
    result["cuda_fit_vs_cpu_fit"] = {
        m: _compare(proba["cuda"][m], proba["cpu"][m])
        | {"accuracy_cpu_fit": accuracy(proba["cpu"][m], labels)}
        | {"accuracy_cuda_fit": accuracy(proba["cuda"][m], labels)}
        for m in both
    }
    timed = next((d for d in ("cuda", "cpu") if not fallback[d]), None)
    if timed is None:
        print("both fits fell back to the spectra: no real-time graph to time")
        return _finish(result, args.json)
    models[timed].set_params(device="cuda")
    x = models[timed].prepare(test.spectra).flat()
    result["realtime_graph_cuda"] = _graph_timings(models[timed], x, args.calls) | {"fitted_on": timed}
    for m in both:
        same, fits = result["same_weights_cuda_vs_cpu"][m], result["cuda_fit_vs_cpu_fit"][m]
        print(
            f"{m:5s}: same weights CUDA vs CPU mean |dp| {same['mean_abs_dp']:.1e}, labels agree "
            f"{same['label_agreement']:.2%}; CUDA fit vs CPU fit labels agree {fits['label_agreement']:.2%}, "
            f"accuracy {fits['accuracy_cuda_fit']:.3f} vs {fits['accuracy_cpu_fit']:.3f}"
        )
    timings = result["realtime_graph_cuda"]
    for name in ("eager", "compiled"):
        t = timings[name]
        print(
            f"graph {name:8s}: batch-32 {t['b32_latency_ms']:.3f} ms, "
            f"{t['spectra_per_s_13680']:,.0f} spectra/s on one 13,680 batch"
        )
    print(f"fit: {fit_s['cpu']:.1f} s on the CPU, {fit_s['cuda']:.1f} s on {result['device']}")
    return _finish(result, args.json)


def _finish(result: dict[str, Any], path: Path | None) -> dict[str, Any]:
    if path is not None:
        write_json(path, result)
    return result


if __name__ == "__main__":
    main()
