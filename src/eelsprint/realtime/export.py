"""Exporting the real-time graph (:class:`~eelsprint.models.head.RealtimeModel`), loaded back checked.

Formats
-------
``pt2``
    ``torch.export`` program (``model.pt2``), plus an AOTInductor-compiled package
    (``model.aoti.pt2``, C++ kernels, no Python needed to run it) where the compiler
    works; loading prefers the compiled package, after loading and running it in a
    child process (:mod:`eelsprint.realtime.aoti`): where that fails, the
    ``torch.export`` program runs instead.
``onnx``
    ONNX (dynamo exporter), run under ONNX Runtime's CPU provider.
``torchscript``
    Traced and frozen TorchScript (``torch.jit``, deprecated upstream but still the
    format of many C++ deployments).
``tensorrt``
    Torch-TensorRT, dynamo path on a ``torch.export`` program, FP16 or FP32, dynamic
    batch (min/opt/max), saved with ``torch_tensorrt.save``; needs CUDA and the
    ``[tensorrt]`` extra.

Every artefact is a directory written atomically: the model file(s), ``probe.safetensors``
(a fixed batch of spectra and the PyTorch model's float32 outputs on it) and
``export.json`` (format, precision, tolerances, classes, energy axis) and ``manifest.json``
(the checksums, in the same format as a model directory's: :mod:`eelsprint.data.manifest`).
:func:`load_exported` verifies the checksums, runs the artefact on the probe and
refuses it (:class:`~eelsprint.exceptions.ExportError`) unless every output is within
``atol + rtol * |reference|`` of the PyTorch model: ``atol=1e-4, rtol=1e-3`` for float32,
``atol=2e-2, rtol=5e-2`` for FP16 (see :data:`TOLERANCES`). :func:`export` runs the same
check before it puts the directory in place.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import safetensors.torch
import torch

from eelsprint.config import Precision, check_precision
from eelsprint.data.atomic import atomic_directory
from eelsprint.data.manifest import MANIFEST, read_json_object, read_manifest, verify_files, write_manifest
from eelsprint.exceptions import ExportError, typed_first_line
from eelsprint.inference.runtime import physical_cores, run_chunks
from eelsprint.models.head import OUTPUTS, RealtimeModel
from eelsprint.realtime.aoti import AOTI_FILE, aoti_problem, compile_aoti, load_aoti
from eelsprint.realtime.tensorrt import dynamic_batch, load_tensorrt, tensorrt_module, write_tensorrt

if TYPE_CHECKING:
    from eelsprint.classify import FingerprintClassifier

__all__ = [
    "CPU_FORMATS",
    "FORMATS",
    "TOLERANCES",
    "ExportedModel",
    "export",
    "load_exported",
    "probe_batch",
]

FORMATS = ("pt2", "onnx", "torchscript", "tensorrt")
CPU_FORMATS = ("pt2", "onnx", "torchscript")
#: (atol, rtol) of the output check per precision.
TOLERANCES: dict[Precision, tuple[float, float]] = {"fp32": (1e-4, 1e-3), "fp16": (2e-2, 5e-2)}
_FILES = {"pt2": "model.pt2", "onnx": "model.onnx", "torchscript": "model.ts", "tensorrt": "model.trt.ep"}
PROBE = "probe.safetensors"
META = "export.json"


@contextlib.contextmanager
def _quiet_exporters() -> Iterator[None]:
    """Silence upstream deprecations raised inside torch's own exporters (not ours to fix).

    ``torch.jit.*`` is deprecated in torch >= 2.13 but TorchScript is a format this
    module must still write; the ONNX exporter trips torch's own pytree deprecation
    (``isinstance(treespec, LeafSpec)``) and logs about torchvision ops; ``torch.export.save``
    warns about the channels-last (non-contiguous) convolution weights, which it stores
    correctly (the probe check below would catch it otherwise); ``torch.export.load`` in torch 2.11
    warns that it wraps a read-only buffer (seen on a lent H200; inference never writes to it).
    """
    onnx_log = logging.getLogger("torch.onnx")
    level = onnx_log.level
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=r"`torch\.jit\.\w+` is deprecated", category=DeprecationWarning
        )
        warnings.filterwarnings(
            "ignore", message=r"`isinstance\(treespec, LeafSpec\)`", category=FutureWarning
        )
        warnings.filterwarnings(
            "ignore", message="No complete tensor found in the group", category=UserWarning
        )
        warnings.filterwarnings("ignore", message="The given buffer is not writable", category=UserWarning)
        onnx_log.setLevel(logging.ERROR)
        try:
            yield
        finally:
            onnx_log.setLevel(level)


def probe_batch(clf: FingerprintClassifier, n: int = 64, seed: int = 0) -> torch.Tensor:
    """A fixed batch of ``n`` spectra for the output check: library spectra, noisy mixtures, off-library.

    Built from the model's own fingerprint library (so it exists for any model), with
    Gaussian noise at 1-10 % of the library's peak and a few spectra in no class
    (reversed, flat), covering confident, ambiguous and out-of-library outputs.
    """
    rng = np.random.default_rng(seed)
    lib = clf.library_.spectra
    peak = float(np.abs(lib).max()) or 1.0
    i, j = rng.integers(len(lib), size=(2, n))
    w = rng.uniform(0.5, 1.0, (n, 1))
    x = w * lib[i] + (1 - w) * lib[j]
    x[: len(lib)] = lib[: min(n, len(lib))]
    x = x + rng.normal(0, 1, x.shape) * rng.uniform(0.01, 0.1, (n, 1)) * peak
    x[-2] = x[-2, ::-1]
    x[-1] = peak * 0.3
    return torch.as_tensor(x, dtype=torch.float32)


def _write(
    model: RealtimeModel,
    probe: torch.Tensor,
    tmp: Path,
    fmt: str,
    precision: Precision,
    options: dict[str, Any],
) -> dict[str, Any]:
    """Write the artefact of ``fmt`` into ``tmp``; return extra metadata."""
    path = tmp / _FILES[fmt]
    extra: dict[str, Any] = {}
    with _quiet_exporters(), torch.no_grad():
        if fmt == "pt2":
            program = torch.export.export(model, (probe,), dynamic_shapes=dynamic_batch(options["max_batch"]))
            torch.export.save(program, str(path))
            extra = compile_aoti(program, tmp / AOTI_FILE) if options["aot"] else {"aoti": False}
        elif fmt == "onnx":
            torch.onnx.export(
                model,
                (probe,),
                str(path),
                dynamo=True,
                verbose=False,
                input_names=["spectra"],
                output_names=list(OUTPUTS),
                dynamic_shapes=dynamic_batch(options["max_batch"]),
                external_data=False,  # one self-contained file (the weights are ~120 kB)
            )
        elif fmt == "torchscript":
            traced = torch.jit.freeze(torch.jit.trace(model, probe).eval())
            torch.jit.save(traced, str(path))
        else:
            write_tensorrt(model, probe, path, precision, options["batch"], CPU_FORMATS)
    return extra


@dataclass
class ExportedModel:
    """A loaded, checked artefact: call it on spectra like the PyTorch model.

    Attributes
    ----------
    fmt : str
        ``"pt2"``, ``"onnx"``, ``"torchscript"`` or ``"tensorrt"``.
    meta : dict
        Contents of ``export.json``.
    runner : callable
        Float32 CPU tensor ``(b, n_channels)`` -> tuple of CPU tensors (:data:`OUTPUTS`).
    max_diff : dict of str to float
        Largest absolute difference from the reference per output on the probe.
    """

    fmt: str
    meta: dict[str, Any]
    runner: Callable[[torch.Tensor], tuple[torch.Tensor, ...]]
    max_diff: dict[str, float]

    @property
    def classes(self) -> np.ndarray:
        """Library labels, the order of the ``proba`` columns."""
        return np.array(self.meta["classes"])

    def __call__(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One batch ``(b, n_channels)`` -> the outputs in :data:`OUTPUTS` order."""
        return self.runner(x)

    def predict(self, x: Any, chunk: int = 512) -> dict[str, np.ndarray]:
        """All outputs by name for spectra ``x`` of shape ``(N, n_channels)`` on the model's axis."""
        out = run_chunks(self.runner, torch.as_tensor(np.asarray(x), dtype=torch.float32), chunk)
        return {name: t.numpy() for name, t in zip(OUTPUTS, out, strict=True)}


def _runner(
    directory: Path, meta: dict[str, Any], probe_aoti: bool = True
) -> Callable[[torch.Tensor], tuple[torch.Tensor, ...]]:
    """The artefact's callable; ``probe_aoti``: load a compiled package in a child process first."""
    fmt = meta["format"]
    path = directory / _FILES[fmt]
    aoti = fmt == "pt2" and bool(meta.get("aoti"))
    if aoti and probe_aoti and (problem := aoti_problem(directory / AOTI_FILE, directory / PROBE)):
        warnings.warn(
            f"{directory}: the AOTInductor package cannot run here ({problem}); "
            "running the torch.export program instead",
            RuntimeWarning,
            stacklevel=4,
        )
        aoti = False
    with _quiet_exporters():
        if aoti:
            return load_aoti(directory / AOTI_FILE)
        if fmt == "pt2":
            module = torch.export.load(str(path)).module()
            return lambda x: tuple(module(x))
        if fmt == "onnx":
            import onnxruntime as ort

            options = ort.SessionOptions()
            options.intra_op_num_threads = physical_cores()
            session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            return lambda x: tuple(torch.from_numpy(a) for a in session.run(None, {"spectra": x.numpy()}))
        if fmt == "torchscript":
            scripted = torch.jit.load(str(path), map_location="cpu")
            return lambda x: tuple(scripted(x))
    return load_tensorrt(path, CPU_FORMATS)


def _check(directory: Path, meta: dict[str, Any], probe_aoti: bool = True) -> ExportedModel:
    """Load the runner, run it on the probe and compare with the stored reference outputs."""
    try:
        stored = safetensors.torch.load_file(str(directory / PROBE))
        runner = _runner(directory, meta, probe_aoti)
        with torch.inference_mode():
            outputs = runner(stored["probe"])
    except ExportError:
        raise
    except Exception as err:  # unreadable or incompatible artefact
        raise ExportError(
            f"{directory}: cannot load or run the {meta['format']} artefact ({typed_first_line(err)})"
        ) from None
    atol, rtol = meta["tolerance"]["atol"], meta["tolerance"]["rtol"]
    diffs = {}
    for name, out in zip(OUTPUTS, outputs, strict=True):
        ref = stored[f"ref.{name}"]
        diff = (out.float() - ref).abs()
        diffs[name] = float(diff.max())
        if out.shape != ref.shape or not bool((diff <= atol + rtol * ref.abs()).all()):
            raise ExportError(
                f"{directory}: the {meta['format']} artefact's '{name}' differs from the PyTorch model "
                f"on the probe batch (max |diff| {diffs[name]:.3g}, tolerance {atol:g} + {rtol:g}*|ref|); "
                "refusing to run it"
            )
    return ExportedModel(meta["format"], meta, runner, diffs)


def export(
    clf: FingerprintClassifier,
    fmt: str,
    out: str | Path,
    *,
    precision: str = "fp32",
    aot: bool = True,
    batch: tuple[int, int, int] = (1, 512, 4096),
) -> ExportedModel:
    """Export the real-time graph of a fitted model and check it on a probe batch.

    Parameters
    ----------
    clf : FingerprintClassifier
        A fitted classifier with a distilled head (its graph is exported from a CPU copy).
    fmt : {"pt2", "onnx", "torchscript", "tensorrt"}
    out : path
        Directory to write (replaced atomically if it exists).
    precision : {"fp32", "fp16"}
        ``"fp16"`` only for ``tensorrt`` (:data:`eelsprint.config.PRECISIONS`).
    aot : bool
        ``pt2`` only: also compile with AOTInductor (tens of seconds). Dropped, with
        the reason in ``export.json``'s ``aoti_error``, where the package cannot be
        compiled or cannot be loaded and run here
        (:func:`~eelsprint.realtime.aoti.aoti_problem`).
    batch : (int, int, int)
        Dynamic batch range (min, opt, max); ``opt`` is TensorRT's tuning point.

    Returns
    -------
    ExportedModel
        The written artefact, loaded and checked.

    Raises
    ------
    ExportError
        Unknown format or precision, a format unavailable here (``tensorrt`` without
        CUDA/TensorRT), an export failure, or outputs outside the tolerance.

    Examples
    --------
    >>> exported = export(FingerprintClassifier.load("model"), "onnx", "model-onnx")  # doctest: +SKIP
    >>> exported.predict(spectra)["proba"].shape  # doctest: +SKIP
    (570, 4)
    """
    if fmt not in FORMATS:
        raise ExportError(f"unknown export format {fmt!r}; expected one of {', '.join(FORMATS)}")
    precision = check_precision(precision, fmt, error=ExportError)
    if not batch[0] <= batch[1] <= batch[2]:
        raise ExportError(f"batch must be (min, opt, max) with min <= opt <= max, got {batch}")
    if fmt == "tensorrt":
        tensorrt_module(CPU_FORMATS)
    net = cast(RealtimeModel, clf.realtime_model())
    if clf.device_.type != "cpu":  # exported and checked on the CPU (TensorRT moves it itself)
        net = copy.deepcopy(net).cpu()
    probe = probe_batch(clf)
    with torch.inference_mode():
        reference = net(probe)
    atol, rtol = TOLERANCES[precision]
    out = Path(out)
    try:
        with atomic_directory(out) as tmp:
            extra = _write(
                net, probe, tmp, fmt, precision, {"aot": aot, "max_batch": batch[2], "batch": batch}
            )
            tensors = {
                "probe": probe,
                **{f"ref.{k}": v.contiguous() for k, v in zip(OUTPUTS, reference, strict=True)},
            }
            (tmp / PROBE).write_bytes(safetensors.torch.save(tensors))  # umask, not 0600
            if extra.get("aoti") and (problem := aoti_problem(tmp / AOTI_FILE, tmp / PROBE)):
                (tmp / AOTI_FILE).unlink()  # the program (model.pt2) runs instead
                extra = {"aoti": False, "aoti_error": problem}
            files = sorted(p.name for p in tmp.iterdir())
            meta = {
                "format": fmt,
                "precision": precision,
                "tolerance": {"atol": atol, "rtol": rtol},
                "outputs": list(OUTPUTS),
                "input": {"name": "spectra", "n_channels": int(probe.shape[1]), "dtype": "float32"},
                "batch": {"min": batch[0], "opt": batch[1], "max": batch[2]},
                "classes": [str(c) for c in clf.classes_],
                "energy": [float(e) for e in clf.energy_],
                "torch_version": torch.__version__,
                **extra,
            }
            (tmp / META).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
            write_manifest(tmp, [*files, META])
            exported = _check(tmp, meta, probe_aoti=False)  # probed just above
    except ExportError:
        raise
    except Exception as err:  # exporters fail in many ways
        raise ExportError(f"{fmt} export failed ({typed_first_line(err)})") from None
    return ExportedModel(exported.fmt, exported.meta, _runner(out, meta, False), exported.max_diff)


def load_exported(path: str | Path) -> ExportedModel:
    """Load an artefact written by :func:`export`, verify its files and check its outputs.

    Parameters
    ----------
    path : path
        The artefact directory.

    Returns
    -------
    ExportedModel

    Raises
    ------
    ExportError
        Missing or foreign directory, a file modified or truncated (checksum), an
        artefact that cannot run here (e.g. ``tensorrt`` without CUDA), or outputs on
        the probe batch outside the stated tolerance of the PyTorch model's.

    Warns
    -----
    RuntimeWarning
        A ``pt2`` artefact's compiled package cannot be loaded here (checked in a child
        process); its ``torch.export`` program runs instead.
    """
    directory = Path(path)
    try:
        meta = read_json_object(directory / META, ExportError)
    except ExportError as err:
        reason = str(err).removeprefix(f"{directory}: ")
        raise ExportError(f"{directory}: not an eelsprint export ({reason})") from None
    if not isinstance(meta.get("format"), str) or meta["format"] not in FORMATS:
        raise ExportError(f"{directory}: {META} does not describe an eelsprint export")
    if "sha256" in meta and not (directory / MANIFEST).exists():
        raise ExportError(f"{directory}: exported by an older eelsprint (no {MANIFEST}); export it again")
    verify_files(directory, read_manifest(directory, ExportError), (META, PROBE), ExportError)
    return _check(directory, meta)
