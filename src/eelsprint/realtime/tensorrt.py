"""The Torch-TensorRT part of :mod:`eelsprint.realtime.export`: import guard, engine build, engine load.

``torch_tensorrt`` is an optional extra (``pip install 'eelsprint[tensorrt]'``) that
needs CUDA and an NVIDIA GPU; it is imported only inside these functions.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from eelsprint.config import Precision
from eelsprint.exceptions import ExportError, typed_first_line
from eelsprint.models.head import DTYPES, CastModel, RealtimeModel

__all__ = ["dynamic_batch", "load_tensorrt", "tensorrt_module", "write_tensorrt"]


def tensorrt_module(cpu_formats: tuple[str, ...]) -> Any:
    """``torch_tensorrt``, or a one-line :class:`ExportError` that names ``cpu_formats`` instead."""
    cpu = ", ".join(cpu_formats)
    try:
        import torch_tensorrt
    except Exception as err:  # a bare Exception when the TensorRT libraries are missing
        raise ExportError(
            f"format 'tensorrt' needs CUDA and Torch-TensorRT (pip install 'eelsprint[tensorrt]'), "
            f"not available here ({typed_first_line(err)}); CPU formats: {cpu}"
        ) from None
    if not torch.cuda.is_available():
        raise ExportError(f"format 'tensorrt' needs a CUDA GPU and none is visible here; CPU formats: {cpu}")
    return torch_tensorrt


def dynamic_batch(max_batch: int) -> dict[str, dict[int, Any]]:
    """``torch.export`` dynamic shapes: the batch axis of input ``x`` from 1 to ``max_batch``."""
    return {"x": {0: torch.export.Dim("batch", min=1, max=max_batch)}}


def write_tensorrt(
    model: RealtimeModel,
    probe: torch.Tensor,
    path: Path,
    precision: Precision,
    batch: tuple[int, int, int],
    cpu_formats: tuple[str, ...],
) -> None:
    """Compile ``model`` (dynamo path, "fp16" or "fp32") for batches (min, opt, max); save it."""
    trt = tensorrt_module(cpu_formats)
    net = (CastModel(model, DTYPES[precision]) if precision != "fp32" else model).cuda().eval()
    example = probe[: batch[1]].cuda() if len(probe) >= batch[1] else probe.cuda()
    program = torch.export.export(net, (example,), dynamic_shapes=dynamic_batch(batch[2]))
    n_channels = probe.shape[1]
    inputs = [
        trt.Input(
            min_shape=(batch[0], n_channels),
            opt_shape=(batch[1], n_channels),
            max_shape=(batch[2], n_channels),
            dtype=torch.float32,
        )
    ]
    options: dict[str, Any] = {"min_block_size": 1}
    if "use_explicit_typing" in inspect.signature(trt.dynamo.compile).parameters:
        options["use_explicit_typing"] = True  # the weights' dtype decides (FP16 copy or FP32)
    else:
        options["enabled_precisions"] = {DTYPES[precision]}
    compiled = trt.dynamo.compile(program, inputs=inputs, **options)
    try:
        trt.save(compiled, str(path), output_format="exported_program", arg_inputs=[example])
    except TypeError:  # torch-tensorrt < 2.6 names it `inputs`
        trt.save(compiled, str(path), output_format="exported_program", inputs=[example])


def load_tensorrt(
    path: Path, cpu_formats: tuple[str, ...]
) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    """A runner for a saved engine: float32 CPU spectra in, float32 CPU outputs back."""
    tensorrt_module(cpu_formats)  # registers TensorRT's runtime ops
    program = torch.export.load(str(path)).module()
    return lambda x: tuple(t.float().cpu() for t in program(x.cuda()))
