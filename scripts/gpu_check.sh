#!/usr/bin/env bash
# The one command that proves the GPU path on a Linux machine with an NVIDIA GPU and nothing of obs-rvm's installed
# (no network needed): sets up from a wheelhouse made by scripts/gpu_wheelhouse.sh, runs every `gpu`-marked test that
# can run there, times 1280x720 and 1920x1080 with `obs-rvm bench --backend tensorrt` where TensorRT is installed,
# and ends with one line per check: ran / skipped: reason / failed: reason. Where TensorRT is missing, the CUDA
# binding's parts (context across threads, pinned buffers, state double-buffering, events) still run on the GPU.
# Finishes within 8 minutes (each step gets what is left of that). Exit code 0 unless a check failed.
# Usage: bash scripts/gpu_check.sh [WHEELHOUSE]   (default ./gpu-wheelhouse; logs in $GPU_CHECK_LOGS or a temp folder)
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WH="$(realpath -m "${1:-$ROOT/gpu-wheelhouse}")"
BUDGET_S=450           # 7.5 minutes for the steps, the rest for set-up slack
START=$SECONDS
CHECKS=("set-up" "CUDA binding on the GPU" "TensorRT engines vs onnxruntime" "bench 1280x720" "bench 1920x1080")
declare -A RESULT=()
LOGS=""

summary() {
  echo
  echo "gpu_check summary ($(( SECONDS - START )) s${LOGS:+; logs in $LOGS}):"
  local failed=0 c
  for c in "${CHECKS[@]}"; do
    echo "  $c: ${RESULT[$c]:-skipped: not reached}"
    [[ "${RESULT[$c]:-}" == failed* ]] && failed=1
  done
  exit "$failed"
}

skip_rest() {  # every check not decided yet gets this reason
  local c
  for c in "${CHECKS[@]}"; do [ -n "${RESULT[$c]:-}" ] || RESULT[$c]="skipped: $1"; done
}

left() { echo $(( BUDGET_S - (SECONDS - START) )); }

# -- is there an NVIDIA GPU? ---------------------------------------------------------------------------------------
gpus="$(nvidia-smi -L 2>/dev/null | grep -c '^GPU ' || true)"
if [ "${gpus:-0}" -lt 1 ]; then
  skip_rest "no NVIDIA GPU"
  summary
fi
LOGS="${GPU_CHECK_LOGS:-$(mktemp -d /tmp/gpu-check.XXXXXX)}"
mkdir -p "$LOGS"
nvidia-smi --query-gpu=name,driver_version,compute_cap --format=csv,noheader 2>/dev/null | head -1 | \
  sed 's/^/gpu_check: GPU: /'
nvidia-smi 2>/dev/null | grep -o 'CUDA Version: [0-9.]*' | head -1 | sed 's/^/gpu_check: driver /'

# -- set-up from the wheelhouse, into a folder of its own ------------------------------------------------------------
if [ ! -d "$WH/wheels" ]; then
  RESULT["set-up"]="failed: no wheelhouse at $WH (make one with scripts/gpu_wheelhouse.sh on a machine with PyPI)"
  skip_rest "set-up failed"
  summary
fi
PY="$(command -v python3)"
PYV="$("$PY" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
SITE="$LOGS/site"
export PYTHONPATH="$SITE" PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
export OBS_RVM_TEST_DATA="$WH/data" OBS_RVM_CACHE_DIR="$LOGS/cache" OBS_RVM_MODEL="$WH/data/models/rvm_mobilenetv3_tfjs_int8_dequant.onnx"
# What this Python already has is used as it is; only what it lacks comes from the wheelhouse (no index, no network).
need=(obs-rvm)
for dist in pycuda pytools mako markupsafe siphash24 platformdirs typing-extensions tqdm onnxsim rich markdown-it-py \
            mdurl pygments pytest pluggy iniconfig packaging; do
  "$PY" -c "import importlib.metadata as m, sys; m.version(sys.argv[1])" "$dist" 2>/dev/null || need+=("$dist")
done
echo "gpu_check: Python $PYV ($PY); from the wheelhouse: ${need[*]}"
if ! timeout "$(left)" "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile \
     --find-links "$WH/wheels" --target "$SITE" "${need[@]}" >"$LOGS/setup.log" 2>&1; then
  reason="$(grep -m1 -E '^ERROR' "$LOGS/setup.log" || tail -1 "$LOGS/setup.log")"
  [[ "$reason" == *pycuda* ]] && reason="$reason (no pycuda wheel for Python $PYV: PYTHONS=$PYV bash scripts/gpu_wheelhouse.sh)"
  RESULT["set-up"]="failed: $reason"
  skip_rest "set-up failed"
  summary
fi
missing="$("$PY" - <<'EOF' 2>&1
import importlib
bad = []
for module in ("numpy", "cv2", "onnx", "onnxruntime", "onnxsim", "platformdirs", "tqdm", "pytest", "pycuda.driver",
               "obs_rvm"):
    try:
        importlib.import_module(module)
    except Exception as e:
        bad.append(f"{module} ({str(e).splitlines()[0] if str(e) else type(e).__name__})")
print("; ".join(bad))
EOF
)"
if [ -n "$missing" ]; then
  RESULT["set-up"]="failed: cannot import $missing (numpy, OpenCV, onnx and onnxruntime must be this Python's own)"
  skip_rest "set-up failed"
  summary
fi
RESULT["set-up"]="ran: Python $PYV, wheelhouse $WH"

# -- the checks -------------------------------------------------------------------------------------------------------
pytest_check() {  # name, cap in seconds, pytest arguments...
  local name="$1" cap="$2"; shift 2
  local budget log rc line passed skipped failed reason
  budget="$(left)"; [ "$budget" -gt "$cap" ] && budget="$cap"
  if [ "$budget" -lt 20 ]; then RESULT[$name]="skipped: out of time (the 8-minute budget)"; return; fi
  log="$LOGS/$(echo "$name" | tr ' /' '__').log"
  echo "gpu_check: $name (up to ${budget} s)"
  (cd "$ROOT" && timeout "$budget" "$PY" -m pytest -q -rs -p no:cacheprovider "$@") >"$log" 2>&1
  rc=$?
  line="$(grep -E '(passed|failed|skipped|error|no tests ran)' "$log" | tail -1 | sed 's/=//g; s/^ *//; s/ *$//')"
  passed="$(grep -oE '[0-9]+ passed' <<<"$line" | cut -d' ' -f1)"
  failed="$(grep -oE '[0-9]+ (failed|error)' <<<"$line" | cut -d' ' -f1)"
  if [ "$rc" -eq 124 ]; then
    RESULT[$name]="failed: timed out after ${budget} s (${line:-no result})"
  elif [ "$rc" -ne 0 ] && [ "$rc" -ne 5 ] || [ -n "$failed" ]; then
    RESULT[$name]="failed: ${line:-pytest exit code $rc} (see $log)"
  elif [ -n "$passed" ]; then
    RESULT[$name]="ran: $line"
  else
    reason="$(grep -m1 '^SKIPPED' "$log" | sed 's/^SKIPPED \[[0-9]*\] [^ ]*: //')"
    RESULT[$name]="skipped: ${reason:-no test could run}"
  fi
}

pytest_check "CUDA binding on the GPU" 120 -m gpu tests/test_device_io.py

trt_missing="$("$PY" -c 'import tensorrt' 2>&1 | tail -1)"
if [ -n "$trt_missing" ]; then
  why="TensorRT not available (${trt_missing})"
  RESULT["TensorRT engines vs onnxruntime"]="skipped: $why"
  RESULT["bench 1280x720"]="skipped: $why"
  RESULT["bench 1920x1080"]="skipped: $why"
  summary
fi
pytest_check "TensorRT engines vs onnxruntime" 300 -m gpu tests/test_tensorrt_gpu.py

for size in 1280x720 1920x1080; do
  name="bench $size"
  budget="$(left)"; [ "$budget" -gt 150 ] && budget=150
  if [ "$budget" -lt 30 ]; then RESULT[$name]="skipped: out of time (the 8-minute budget)"; continue; fi
  echo "gpu_check: $name (up to ${budget} s)"
  log="$LOGS/bench_$size.log"
  (cd "$ROOT" && timeout "$budget" "$PY" -m obs_rvm.cli bench --backend tensorrt --sizes "$size" --frames 60 \
     --rss-frames 0) >"$log" 2>&1
  rc=$?
  if [ "$rc" -eq 0 ]; then
    RESULT[$name]="ran: $(grep -E "^ *$size|$size" "$log" | tail -1 | sed 's/^ *//')"
  else
    RESULT[$name]="failed: $( [ "$rc" -eq 124 ] && echo "timed out after ${budget} s" || tail -1 "$log") (see $log)"
  fi
done
summary
