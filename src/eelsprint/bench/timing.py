"""Timing primitives of ``eelsprint bench``: machine facts, sgemm speed, throughput and latency.

Every figure is a median over repeats, measured under ``torch.inference_mode``.
"""

from __future__ import annotations

import os
import platform
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from eelsprint.inference.runtime import physical_cores

__all__ = ["ISA_FLAGS", "Pipeline", "latency_ms", "machine_info", "sgemm_gflops", "throughput"]

#: A pipeline under test: a batch of spectra in, anything out.
Pipeline = Callable[[torch.Tensor], Any]
#: CPU features that decide which reduced precisions are fast.
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def machine_info() -> dict[str, Any]:
    """CPU model, cores (logical, physical, usable), ISA flags from /proc/cpuinfo, versions."""
    flags: set[str] = set()
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "flags":
                flags |= set(value.split())
            elif key.strip() == "model name":
                model = value.strip()
    except OSError:
        pass
    return {
        "cpu": model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "physical_cores": physical_cores(),
        "isa": {flag: flag in flags for flag in ISA_FLAGS},
        "torch": torch.__version__,
        "torch_threads": physical_cores(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
    }


def sgemm_gflops(size: int = 1024, repeats: int = 10) -> float:
    """Float32 matrix-product speed (GFLOP/s), median of ``repeats`` products of ``size``^3."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    torch.mm(a, b)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def throughput(fn: Pipeline, x: torch.Tensor, chunk: int, repeats: int) -> float:
    """Spectra per second of ``fn`` over ``x`` in chunks of ``chunk``, median of ``repeats`` passes."""
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            for i in range(0, len(x), chunk):
                fn(x[i : i + chunk])
            times.append(time.perf_counter() - start)
    return len(x) / statistics.median(times)


def latency_ms(fn: Pipeline, x: torch.Tensor, budget_s: float = 0.5, calls: int = 200) -> float:
    """Median time of single calls on ``x``: at least 3, then until ``budget_s`` or ``calls``."""
    times: list[float] = []
    with torch.inference_mode():
        fn(x)
        while len(times) < 3 or (len(times) < calls and sum(times) < budget_s):
            start = time.perf_counter()
            fn(x)
            times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)
