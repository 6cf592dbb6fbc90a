"""Timing primitives of ``eelsprint bench``: machine facts, sgemm speed, throughput and latency.

Every figure is a median over repeats, measured under ``torch.inference_mode``.
"""

from __future__ import annotations

import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch

from eelsprint.inference.chunks import map_chunks
from eelsprint.inference.runtime import cpu_info

__all__ = [
    "ISA_FLAGS",
    "Pipeline",
    "latency_ms",
    "machine_info",
    "peak_rss_mib",
    "sgemm_gflops",
    "throughput",
]

#: A pipeline under test: a batch of spectra in, anything out.
Pipeline = Callable[[torch.Tensor], Any]
#: CPU features that decide which reduced precisions are fast.
ISA_FLAGS = ("avx2", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile", "amx_bf16", "amx_int8")


def peak_rss_mib() -> float:
    """This process's peak resident memory in MiB: Linux's ``VmHWM``, else ``getrusage``.

    ``ru_maxrss`` survives ``exec``: a process started by a large parent reports the parent's
    peak (a bare interpreter started by a 225 MiB parent: 225 MiB, against 8.5 MiB in ``VmHWM``).
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB on Linux


def machine_info() -> dict[str, Any]:
    """CPU model, cores (logical, physical, usable), ISA flags (:func:`cpu_info`), versions, load."""
    cpu = cpu_info()
    return {
        "cpu": cpu.model,
        "logical_cpus": os.cpu_count(),
        "usable_cpus": cpu.usable_cpus,
        "physical_cores": cpu.physical_cores,
        "isa": {flag: flag in cpu.flags for flag in ISA_FLAGS},
        "torch": torch.__version__,
        "torch_threads": cpu.physical_cores,  # what torch_threads() uses
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
    """Spectra per second of ``fn`` over ``x`` in chunks of ``chunk``, median of ``repeats`` passes.

    Each pass is :func:`~eelsprint.inference.chunks.map_chunks`, joining the outputs as a caller would.
    """
    times = []
    with torch.inference_mode():
        for _ in range(repeats):
            start = time.perf_counter()
            map_chunks(fn, x, chunk=chunk)
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
