#!/usr/bin/env bash
# GPU proof on a lent device machine, as one short run (about 6 minutes on an H200; results under $OUT):
# 1. evaluation/gpu_cuda_check.py: fit and classify with device="cuda" against the CPU, and the
#    real-time graph's timings (eager and torch.compile);
# 2. the CUDA tests: the gpu-marked export tests (TensorRT ones skip without torch_tensorrt),
#    fit/classify on the `device` fixture with EELSPRINT_DEVICE=cuda, the AOTInductor round trip
#    and the crashing-loader test;
# 3. evaluation/gpu_bench.py on the shipped model (eager CUDA, CUDA graphs, torch.compile, and
#    TensorRT FP32/FP16 where torch_tensorrt imports).
# Needs: wheels of what the machine lacks in .whl/ (pyro-ppl, pyro-api, arviz, h5netcdf,
# xarray-einstats; carry .whl). Usage:  OUT=/some/dir bash evaluation/gpu_check.sh
set -uo pipefail
OUT=${OUT:-$(mktemp -d)}
mkdir -p "$OUT"
exec > >(tee "$OUT/gpu_check.log") 2>&1
export PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || echo "no nvidia-smi"
if ls .whl/*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl
fi
export PYTHONPATH="/tmp/site:$PWD/src:$PWD"
python3 - <<'PY'
import torch
print("torch", torch.__version__, "cuda", torch.version.cuda, torch.cuda.get_device_name() if torch.cuda.is_available() else "no CUDA")
for name in ("tensorrt", "torch_tensorrt"):
    try:
        module = __import__(name)
        print(name, getattr(module, "__version__", "?"))
    except Exception as err:  # a bare Exception when the TensorRT libraries are missing
        print(name, "unavailable:", type(err).__name__, (str(err).splitlines() or [""])[0])
PY
echo "libnvinfer entries in ldconfig: $(ldconfig -p 2>/dev/null | grep -c libnvinfer)"
timeout 180 python3 evaluation/gpu_cuda_check.py --json "$OUT/gpu-cuda-check.json" 2>&1 | tail -30
EELSPRINT_DEVICE=cuda timeout 200 python3 -m pytest -q -p no:cacheprovider -o addopts="" -rs \
    tests/test_export.py tests/test_classify.py::test_fit_and_classify_on_device \
    -k "gpu or tensorrt or cuda or pt2-True or crashes_its_loader or on_device" 2>&1 | tail -20 | tee "$OUT/pytest_gpu.txt"
timeout 130 python3 evaluation/gpu_bench.py --model models/default --json "$OUT/bench-gpu.json" --budget-s 90 "$@"
echo "gpu_check done"
