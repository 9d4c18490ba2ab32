#!/usr/bin/env bash
# The GPU proof of issue 19, in one call on a lent GPU machine, from the repository root:
#
#   PYTHONPATH=. bash docs/gpu/prove.sh [DEST]
#
# DEST defaults to $OUT (the device tool's folder that comes back), else docs/gpu/latest.
# It needs what the lent machine has: python3 with torch (a CUDA build), numpy, onnx,
# onnxruntime (the CPU-only build there, so ONNX Runtime's CUDA and TensorRT rows stay
# unverified), rich, safetensors, threadpoolctl, scipy, matplotlib, pytest and
# pytest-benchmark; nvidia-ml-py is optional (gpu_mem_growth_mb). Nothing is installed and
# no registry is reached. Each step has its own time limit and a failed step does not stop
# the next, so the whole fits one 10-minute call: start it with timeout_s 600.
set -u
DEST=${1:-${OUT:-docs/gpu/latest}}
mkdir -p "$DEST"
export PYTHONPATH=${PYTHONPATH:-.}
export LSTM_HARNESS_CACHE=${LSTM_HARNESS_CACHE:-$(mktemp -d)}  # a fresh checkpoint, trained here
export LSTM_HARNESS_DB="$DEST/history.sqlite"                   # not the user's history
PY=${PYTHON:-python3}

step() {  # step NAME SECONDS COMMAND...: run it, log it, record its exit status
  local name=$1 limit=$2
  shift 2
  echo "== $name (limit ${limit}s): $*" | tee -a "$DEST/steps.txt"
  local start=$SECONDS
  timeout --kill-after=10 "$limit" "$@" > "$DEST/$name.log" 2>&1
  local code=$?
  echo "   exit $code after $((SECONDS - start)) s" | tee -a "$DEST/steps.txt"
}

{
  date -u +"%Y-%m-%dT%H:%M:%SZ"
  git rev-parse HEAD 2>/dev/null && git status --porcelain --untracked-files=no | head -20
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1
  $PY -c "import sys, torch, onnxruntime as ort; print('python', sys.version.split()[0]); \
print('torch', torch.__version__, 'cuda', torch.version.cuda, 'cudnn', torch.backends.cudnn.version()); \
print('onnxruntime', ort.__version__, ort.get_available_providers())" 2>&1
} > "$DEST/versions.txt"
cat "$DEST/versions.txt"

step doctor 60 $PY -m harness doctor
# The GPU tests, a skip for want of a GPU failing instead (tests/conftest.py). ONNX Runtime
# is left out: the machine's onnxruntime has no CUDA provider, so its GPU tests could only
# fail for that; TensorRT skips with its reason either way.
LSTM_HARNESS_REQUIRE_GPU=1 step pytest-gpu 200 $PY -m pytest -p no:cacheprovider -q -rA -m cuda \
  -k "not onnxruntime" tests
grep -E "^(PASSED|FAILED|ERROR|SKIPPED)|passed|failed" "$DEST/pytest-gpu.log" > "$DEST/pytest-summary.txt"
for scenario in default latency throughput; do
  step "$scenario" 110 $PY -m harness run --device cuda --scenario "$scenario" --allow-contended --allow-unsteady \
    --out "$DEST/$scenario.json"
  [ -f "$DEST/$scenario.json" ] && $PY -m harness report "$DEST/$scenario.json" --format md \
    --output "$DEST/$scenario.md" > /dev/null 2>&1
done
cat "$DEST/steps.txt"
