"""Export round trips with output checks, refusal of mismatching artefacts, and TensorRT (gpu)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import safetensors.torch
import torch

from eelsprint import FingerprintClassifier
from eelsprint.data.manifest import write_manifest
from eelsprint.data.simulate import SimulatedSeries
from eelsprint.exceptions import ExportError
from eelsprint.inference.runtime import run_chunks
from eelsprint.models.head import OUTPUTS
from eelsprint.realtime import aoti
from eelsprint.realtime.aoti import AOTI_FILE, aoti_problem
from eelsprint.realtime.export import META, PROBE, TOLERANCES, export, load_exported
from tests.test_cli import run_cli


@pytest.fixture(scope="module")
def reference(
    fitted: FingerprintClassifier, series: SimulatedSeries
) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """One frame of spectra and the PyTorch real-time model's outputs on it."""
    x = series.spectra.flat()[:570].astype(np.float32)
    out = run_chunks(fitted.realtime_model(), torch.as_tensor(x))
    return x, {name: t.numpy() for name, t in zip(OUTPUTS, out, strict=True)}


@pytest.fixture(scope="module")
def onnx_dir(fitted_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("export") / "onnx"
    export(FingerprintClassifier.load(fitted_dir, progress=False), "onnx", out)
    return out


def _assert_matches(predicted: dict[str, np.ndarray], expected: dict[str, np.ndarray]) -> None:
    atol, rtol = TOLERANCES["fp32"]  # 1e-4 + 1e-3 * |reference|
    for name in OUTPUTS:
        np.testing.assert_allclose(predicted[name], expected[name], atol=atol, rtol=rtol, err_msg=name)


@pytest.mark.parametrize(("fmt", "aot"), [("pt2", True), ("pt2", False), ("torchscript", False)])
def test_export_round_trip_matches_pytorch(
    fmt: str, aot: bool, fitted: FingerprintClassifier, reference: tuple, tmp_path: Path
) -> None:
    x, expected = reference
    exported = export(fitted, fmt, tmp_path / fmt, aot=aot)
    compiled = aot and fmt == "pt2"
    # or dropped because loading it crashed a child (torch 2.11 + CUDA 13 segfaults there)
    crashed = compiled and "killed a child process" in exported.meta.get("aoti_error", "")
    assert exported.meta.get("aoti", False) is compiled or crashed, exported.meta.get("aoti_error")
    loaded = load_exported(tmp_path / fmt)
    assert loaded.fmt == fmt and list(loaded.classes) == list(fitted.classes_)
    assert max(loaded.max_diff.values()) <= TOLERANCES["fp32"][0] * 10
    _assert_matches(loaded.predict(x, chunk=256), expected)


def test_a_compiled_package_that_crashes_its_loader_costs_the_package_not_the_process(
    fitted: FingerprintClassifier, reference: tuple, tmp_path: Path, monkeypatch
) -> None:
    # torch 2.11 + CUDA 13 segfaults in aoti_load_package; a child that aborts stands in for it
    x, expected = reference
    ok = export(fitted, "pt2", tmp_path / "ok", aot=True)
    if ok.meta["aoti"]:
        monkeypatch.setattr(aoti, "AOTI_PROBE", "import os; os.abort()")
        crash = r"cannot run here \(.*SIGABRT.*\); running the torch.export program"
        with pytest.warns(RuntimeWarning, match=crash):
            loaded = load_exported(tmp_path / "ok")
    else:  # the real crash, where this machine's loader segfaults (a lent H200, torch 2.11 + CUDA 13)
        assert "killed a child process" in ok.meta["aoti_error"], ok.meta["aoti_error"]
        assert not (tmp_path / "ok" / AOTI_FILE).exists()
        loaded = load_exported(tmp_path / "ok")
        monkeypatch.setattr(aoti, "AOTI_PROBE", "import os; os.abort()")
    _assert_matches(loaded.predict(x, chunk=256), expected)
    dropped = export(fitted, "pt2", tmp_path / "dropped", aot=True)
    assert dropped.meta["aoti"] is False and "SIGABRT" in dropped.meta["aoti_error"]
    assert not (tmp_path / "dropped" / AOTI_FILE).exists()
    _assert_matches(load_exported(tmp_path / "dropped").predict(x, chunk=256), expected)


def test_aoti_problem_names_the_loader_error(onnx_dir: Path, tmp_path: Path) -> None:
    (tmp_path / "garbage.pt2").write_bytes(b"not a package")
    problem = aoti_problem(tmp_path / "garbage.pt2", onnx_dir / PROBE)
    assert problem is not None and problem.startswith("loading it failed (") and "\n" not in problem


def test_onnx_round_trip_runs_under_onnxruntime(onnx_dir: Path, reference: tuple) -> None:
    x, expected = reference
    loaded = load_exported(onnx_dir)
    meta = json.loads((onnx_dir / META).read_text())
    assert meta["outputs"] == list(OUTPUTS) and meta["input"]["n_channels"] == 240
    assert sorted(json.loads((onnx_dir / "manifest.json").read_text())["files"]) == [
        META,
        "model.onnx",
        PROBE,
    ]
    _assert_matches(loaded.predict(x), expected)
    assert loaded.predict(x[:1])["proba"].shape == (1, 4)  # dynamic batch


def _copy(src: Path, dst: Path) -> Path:
    dst.mkdir()
    for file in src.iterdir():
        (dst / file.name).write_bytes(file.read_bytes())
    return dst


def test_artefact_whose_outputs_disagree_is_refused(onnx_dir: Path, tmp_path: Path) -> None:
    # a consistent artefact (checksums updated) whose outputs no longer match the reference
    bad = _copy(onnx_dir, tmp_path / "bad")
    stored = safetensors.torch.load_file(str(bad / PROBE))
    stored["ref.proba"] = stored["ref.proba"].roll(1, dims=-1)
    safetensors.torch.save_file(stored, str(bad / PROBE))
    write_manifest(bad, [META, "model.onnx", PROBE])  # re-signed: the checksums match again
    with pytest.raises(ExportError, match=r"'proba' differs from the PyTorch model .* refusing to run it"):
        load_exported(bad)


def test_tampered_or_truncated_files_are_refused(onnx_dir: Path, tmp_path: Path) -> None:
    probe = _copy(onnx_dir, tmp_path / "probe")
    data = bytearray((probe / PROBE).read_bytes())
    data[-1] ^= 0xFF
    (probe / PROBE).write_bytes(bytes(data))
    with pytest.raises(ExportError, match="probe.safetensors was modified or truncated"):
        load_exported(probe)
    model = _copy(onnx_dir, tmp_path / "model")
    (model / "model.onnx").write_bytes((model / "model.onnx").read_bytes()[:100])
    with pytest.raises(ExportError, match="model.onnx (is missing|was modified or truncated)"):
        load_exported(model)
    with pytest.raises(ExportError, match="not an eelsprint export"):
        load_exported(tmp_path / "nowhere")


def test_bad_requests_are_refused(fitted: FingerprintClassifier, tmp_path: Path) -> None:
    with pytest.raises(ExportError, match="unknown export format 'keras'"):
        export(fitted, "keras", tmp_path / "k")
    with pytest.raises(ExportError, match="fp16: tensorrt only"):
        export(fitted, "onnx", tmp_path / "k", precision="fp16")
    assert not (tmp_path / "k").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA; see the gpu tests")
def test_tensorrt_without_cuda_names_the_cpu_formats(
    fitted: FingerprintClassifier, fitted_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    with pytest.raises(
        ExportError, match=r"^format 'tensorrt' needs .*; CPU formats: pt2, onnx, torchscript$"
    ):
        export(fitted, "tensorrt", tmp_path / "trt")
    code, _, err = run_cli(
        monkeypatch, capsys, "export", str(fitted_dir), "--format", "tensorrt", "--out", "x"
    )
    assert code == 1 and len(err.strip().splitlines()) == 1 and "CPU formats: pt2, onnx, torchscript" in err


def test_cli_export_writes_a_checked_artefact(fitted_dir: Path, tmp_path: Path, monkeypatch, capsys) -> None:
    out = tmp_path / "ts"
    code, stdout, _ = run_cli(
        monkeypatch, capsys, "export", str(fitted_dir), "-f", "torchscript", "-o", str(out)
    )
    assert code == 0 and "outputs match the PyTorch model" in stdout
    assert load_exported(out).fmt == "torchscript"


def test_cli_export_says_why_a_pt2_artefact_has_no_compiled_package(
    fitted_dir: Path, tmp_path: Path, monkeypatch, capsys
) -> None:
    import torch._inductor

    def no_compiler(*args: object, **kwargs: object) -> None:
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr(torch._inductor, "aoti_compile_and_package", no_compiler)
    code, stdout, _ = run_cli(
        monkeypatch, capsys, "export", str(fitted_dir), "-f", "pt2", "-o", str(tmp_path / "p")
    )
    assert code == 0 and "exported pt2 fp32" in stdout
    assert "no AOTInductor package (RuntimeError: no C++ compiler found); model.pt2 runs instead" in stdout


def _tensorrt_available() -> bool:
    try:
        import torch_tensorrt  # noqa: F401
    except Exception:  # a bare Exception when the TensorRT libraries are missing
        return False
    return True


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_builds_runs_and_matches(
    precision: str, fitted: FingerprintClassifier, reference: tuple, tmp_path: Path
) -> None:
    if not _tensorrt_available():
        pytest.skip("CUDA is here but torch_tensorrt/TensorRT is not installed")
    x, expected = reference
    export(fitted, "tensorrt", tmp_path / precision, precision=precision, batch=(1, 512, 4096))
    loaded = load_exported(tmp_path / precision)  # checks the probe within the precision's tolerance
    atol, rtol = TOLERANCES[precision]
    predicted = loaded.predict(x)
    np.testing.assert_allclose(predicted["proba"], expected["proba"], atol=atol, rtol=rtol)
    assert (predicted["proba"].argmax(-1) == expected["proba"].argmax(-1)).mean() > 0.99


@pytest.mark.gpu
def test_realtime_model_on_cuda_matches_cpu(fitted: FingerprintClassifier, reference: tuple) -> None:
    x, expected = reference
    model = fitted.realtime_model()
    cuda = type(model)(fitted.raw_encoder_, fitted.head_).cuda()
    with torch.inference_mode():
        out = cuda(torch.as_tensor(x).cuda())
    # TF32 may be on for convolutions on the GPU: a looser tolerance than CPU float32
    np.testing.assert_allclose(out[0].cpu().numpy(), expected["proba"], atol=1e-2)
    assert (out[0].argmax(-1).cpu().numpy() == expected["proba"].argmax(-1)).mean() > 0.99
