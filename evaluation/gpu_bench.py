"""The real-time graph on an NVIDIA GPU: eager CUDA, CUDA graphs, torch.compile and TensorRT.

Throughput on GPU-resident spectra in chunks (synchronised at the end, median of
``--repeats``), batch-32 and 570-spectrum-frame latency (synchronised every call), and
agreement with the float32 CPU model (mean |dp|, labels). TensorRT runs through
:func:`eelsprint.realtime.export.export` (FP32 and FP16) when ``torch_tensorrt`` imports; otherwise
the reason is recorded. Each step is skipped once ``--budget-s`` is spent.

Usage (on a machine with CUDA)::

    python evaluation/gpu_bench.py --model MODEL --json OUT.json
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from eelsprint import FingerprintClassifier
from eelsprint.bench.run import bench_spectra
from eelsprint.data.atomic import write_json
from eelsprint.inference.runtime import run_chunks
from eelsprint.models.head import CastModel, RealtimeModel

Fn = Callable[[torch.Tensor], Any]


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _sync_time(fn: Fn, x: torch.Tensor, chunk: int, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        _sync()
        start = time.perf_counter()
        for i in range(0, len(x), chunk):
            fn(x[i : i + chunk])
        _sync()
        times.append(time.perf_counter() - start)
    return len(x) / statistics.median(times)


def _latency_ms(fn: Fn, x: torch.Tensor, calls: int = 300) -> float:
    for _ in range(10):
        fn(x)
    times = []
    for _ in range(calls):
        _sync()
        start = time.perf_counter()
        fn(x)
        _sync()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _graphed(model: torch.nn.Module, example: torch.Tensor) -> Fn:
    """``model`` captured as a CUDA graph for inputs shaped like ``example``."""
    static_in = example.clone()
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            model(static_in)
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        static_out = model(static_in)

    def run(x: torch.Tensor) -> Any:
        if x.shape != static_in.shape:  # e.g. the last, shorter chunk
            return model(x)
        static_in.copy_(x)
        graph.replay()
        return static_out

    return run


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--n", type=int, default=1 << 20, help="spectra for throughput (tiled)")
    parser.add_argument("--chunk", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--budget-s", type=float, default=240.0)
    parser.add_argument("--device", default="cuda", help="cpu only to smoke-test this script")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    torch.set_grad_enabled(False)

    clf = FingerprintClassifier.load(args.model, progress=False)
    x_np, _ = bench_spectra(clf, 13680, 0)
    cpu_model = RealtimeModel(clf.raw_encoder_, clf.head_)
    reference = run_chunks(cpu_model, torch.from_numpy(x_np))[0]
    device = torch.device(args.device)
    x = torch.from_numpy(x_np).to(device)
    big = x.repeat(-(-args.n // len(x)), 1)[: args.n].contiguous()
    base = RealtimeModel(clf.raw_encoder_, clf.head_).to(device).eval()
    result: dict[str, Any] = {
        "device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu (smoke test)",
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "n_throughput": len(big),
        "chunk": args.chunk,
        "variants": {},
    }
    variants: dict[str, Callable[[], tuple[Fn, Fn, Fn]]] = {}

    def eager(model: torch.nn.Module) -> Callable[[], tuple[Fn, Fn, Fn]]:
        return lambda: (model, model, model)

    def graphs(model: torch.nn.Module) -> Callable[[], tuple[Fn, Fn, Fn]]:
        return lambda: (
            _graphed(model, big[: args.chunk]),
            _graphed(model, x[:32]),
            _graphed(model, x[:570]),
        )

    fp16 = CastModel(copy.deepcopy(base), torch.float16).eval()
    bf16 = CastModel(copy.deepcopy(base), torch.bfloat16).eval()
    variants |= {"eager_fp32": eager(base), "eager_fp16": eager(fp16), "eager_bf16": eager(bf16)}
    if device.type == "cuda":
        variants |= {"cudagraph_fp32": graphs(base), "cudagraph_fp16": graphs(fp16)}

    try:
        import torch_tensorrt  # noqa: F401

        from eelsprint.realtime.export import export

        tmp = Path(tempfile.mkdtemp())

        def trt(precision: str) -> Callable[[], tuple[Fn, Fn, Fn]]:
            def build() -> tuple[Fn, Fn, Fn]:
                start = time.perf_counter()
                exported = export(
                    clf, "tensorrt", tmp / precision, precision=precision, batch=(1, 512, args.chunk)
                )
                result[f"tensorrt_{precision}_build_s"] = time.perf_counter() - start
                module = torch.export.load(str(tmp / precision / "model.trt.ep")).module()
                result[f"tensorrt_{precision}_probe_max_diff"] = exported.max_diff
                return module, module, module

            return build

        variants |= {"tensorrt_fp32": trt("fp32"), "tensorrt_fp16": trt("fp16")}
        result["tensorrt"] = "available"
    except Exception as err:  # a bare Exception when the TensorRT libraries are missing
        result["tensorrt"] = (
            f"unavailable: {type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"
        )
    for precision, model in (("fp16", fp16), ("fp32", base)):
        compiled = torch.compile(model, mode="reduce-overhead", dynamic=False)  # Triton kernels + CUDA graphs
        variants[f"compile_graphs_{precision}"] = (lambda c: lambda: (c, c, c))(compiled)

    for name, make in variants.items():
        if time.perf_counter() - began > args.budget_s:
            result["variants"][name] = {"skipped": "time budget spent"}
            continue
        try:
            start = time.perf_counter()
            through, b32, frame = make()
            through(big[: args.chunk])
            setup_s = time.perf_counter() - start
            out = torch.cat(
                [through(x[i : i + args.chunk])[0].float().cpu() for i in range(0, len(x), args.chunk)]
            )
            row = {
                "setup_s": setup_s,
                "spectra_per_s": _sync_time(through, big, args.chunk, args.repeats),
                "b32_latency_ms": _latency_ms(b32, x[:32]),
                "frame570_latency_ms": _latency_ms(frame, x[:570], calls=100),
                "mean_abs_dp_vs_cpu_fp32": float((out - reference).abs().mean()),
                "label_agreement_vs_cpu_fp32": float((out.argmax(-1) == reference.argmax(-1)).float().mean()),
            }
        except Exception as err:  # report and go on: one failing variant must not lose the others
            row = {"error": f"{type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''}"}
        result["variants"][name] = row
        print(name, json.dumps(row), flush=True)
    if device.type == "cuda" and "error" not in result["variants"].get("cudagraph_fp16", {"error": 1}):
        # end to end from pinned host memory (what a detector's frames are in): copy + compute
        graphed = _graphed(fp16, big[: args.chunk])
        host = big.cpu().pin_memory()
        result["cudagraph_fp16_from_host_spectra_per_s"] = _sync_time(
            lambda h: graphed(h.to(device, non_blocking=True)), host, args.chunk, args.repeats
        )
        print("from host", result["cudagraph_fp16_from_host_spectra_per_s"], flush=True)
    result["wall_s"] = time.perf_counter() - began
    if args.json:
        write_json(args.json, result, default=float)
    return result


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    main()
