#!/usr/bin/env bash
# GPU proof of issue 3 on a lent device machine, as one short run (results under $OUT):
# the gpu-marked tests, TensorRT availability, the AOTInductor round trip, and
# evaluation/gpu_bench.py (eager CUDA, CUDA graphs, torch.compile, and TensorRT FP32/FP16 where
# torch_tensorrt imports).
# Needs: wheels of what the machine lacks in .whl/ (pyro-ppl, pyro-api), a fitted model in .gpu/model.
# Usage:  OUT=/some/dir bash evaluation/gpu_check.sh
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
timeout 150 python3 -m pytest -q -p no:cacheprovider -m gpu -rs tests/test_export.py 2>&1 | tail -20 | tee "$OUT/pytest_gpu.txt"
# AOTInductor round trip: on torch 2.11 + CUDA 13 its loader segfaulted; it must now cost the package only
timeout 150 python3 -m pytest -q -p no:cacheprovider -o addopts="" -rs tests/test_export.py \
    -k "pt2-True or crashes_its_loader" 2>&1 | tail -8 | tee "$OUT/pytest_aoti.txt"
timeout 200 python3 evaluation/gpu_bench.py --model .gpu/model --json "$OUT/bench-gpu.json" --budget-s 140 "$@"
echo "gpu_check done"
