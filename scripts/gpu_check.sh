#!/usr/bin/env bash
# The one command that proves the GPU path on a Linux machine with an NVIDIA GPU and nothing of obs-rvm's installed
# (no network needed): sets up from a wheelhouse made by scripts/gpu_wheelhouse.sh, runs every `gpu`-marked test that
# can run there, times 1280x720 and 1920x1080 with `obs-rvm bench --backend tensorrt` where TensorRT is installed,
# and ends with one line per check: ran / skipped: reason / failed: reason. Where TensorRT is missing, the CUDA
# binding's parts (context across threads, pinned buffers, state double-buffering, events) still run on the GPU.
# Finishes within 8 minutes (each step gets what is left of that). Exit code 0 unless a check failed.
# Usage: bash scripts/gpu_check.sh [WHEELHOUSE]   (default ./gpu-wheelhouse; logs in $GPU_CHECK_LOGS or a temp folder)
#
# ONNX Runtime's plugin providers (scripts/provider_check.py: the provider and the CPU provider key the same clip
# frames at 640x480 and 1280x720; ms a frame, first frame, how far the alpha is from the CPU's):
# - WebGPU: its wheel (onnxruntime-ep-webgpu, ~7 MB, one wheel for Python 3.11+) and the Vulkan loader's .deb
#   (libvulkan1) travel in the wheelhouse: scripts/gpu_wheelhouse.sh `pip download`s them on a machine with PyPI
#   into gpu-wheelhouse/, the folder a GPU lease carries (the checkout, ~6 MiB, and the wheelhouse, ~35 MiB, stay
#   under one call's 64 MiB). Here the wheel goes into the set-up's folder, the loader is unpacked beside it where
#   the machine has none, and NVIDIA's Vulkan driver manifest is pointed at where the loader does not find it. It
#   needs the machine's onnxruntime to be 1.24 or newer.
# - TensorRT-RTX: its wheel (onnxruntime-ep-nv-tensorrt-rtx-cu12, 170 MB: TensorRT-RTX and CUDA's runtime) does not
#   fit in one call's 64 MiB and is not carried. Where it is installed, the check keys frames with it on an RTX 30/40/
#   50 GPU (compute capability 8.6, 8.9, 12.0+). Its provider refuses every other GPU ("only supports RTX devices with
#   compute capabilities 86, 89, 120 and above"), the H100 and H200 (9.0) of a lease included: there the check shows
#   obs-rvm's own refusal (found through the driver, before any library is loaded), which is all the wheel could show
#   there too. To check it for real: on an RTX machine, `pip install 'obs-rvm[tensorrt-rtx]'` (or copy the wheel) and
#   run this again; on a lease, the wheel split into parts under 60 MiB (`split -b 60M`), carried one part a call to
#   the same warm machine (ignored folders stay there between calls) and joined there, is the only way in, and only
#   worth it on an RTX machine.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
WH="$(realpath -m "${1:-$ROOT/gpu-wheelhouse}")"
BUDGET_S=450           # 7.5 minutes for the steps, the rest for set-up slack
START=$SECONDS
CHECKS=("set-up" "CUDA binding on the GPU" "WebGPU vs the CPU provider" "TensorRT-RTX" "TensorRT engines vs onnxruntime"
        "bench 1280x720" "bench 1920x1080")
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
# The WebGPU provider's wheel, where this Python lacks it: on its own, so a wheelhouse without it still sets up.
webgpu_wheel="$(ls "$WH"/wheels/onnxruntime_ep_webgpu-*.whl 2>/dev/null | tail -1)"
if ! "$PY" -c 'import onnxruntime_ep_webgpu' 2>/dev/null && [ -n "$webgpu_wheel" ]; then
  "$PY" -m pip install -q --disable-pip-version-check --no-index --no-deps --no-compile --target "$SITE" \
    "$webgpu_wheel" >>"$LOGS/setup.log" 2>&1 || echo "gpu_check: $webgpu_wheel did not install (see $LOGS/setup.log)"
fi

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

vulkan_setup() {  # VULKAN_WHY="" once the Vulkan loader and NVIDIA's Vulkan driver can be found, else why not
  VULKAN_WHY=""
  if ! "$PY" -c 'import ctypes; ctypes.CDLL("libvulkan.so.1")' 2>/dev/null; then
    local deb lib
    deb="$(ls "$WH"/debs/libvulkan1_*.deb 2>/dev/null | tail -1)"
    if [ -z "$deb" ]; then
      VULKAN_WHY="no Vulkan loader (libvulkan.so.1) here, and none in $WH/debs (scripts/gpu_wheelhouse.sh adds it)"
      return
    fi
    dpkg-deb -x "$deb" "$LOGS/vulkan" 2>>"$LOGS/setup.log" || { VULKAN_WHY="cannot unpack $deb"; return; }
    lib="$(find "$LOGS/vulkan" -name libvulkan.so.1 | head -1)"
    export LD_LIBRARY_PATH="$(dirname "$lib")${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
    echo "gpu_check: Vulkan loader from $(basename "$deb")"
  fi
  if [ -z "${VK_DRIVER_FILES:-}${VK_ICD_FILENAMES:-}" ] && \
     ! ls /etc/vulkan/icd.d/nvidia_icd*.json /usr/share/vulkan/icd.d/nvidia_icd*.json >/dev/null 2>&1; then
    local icd
    for icd in /usr/local/nvidia/share/vulkan/icd.d/nvidia_icd.json /usr/lib/x86_64-linux-gnu/nvidia/nvidia_icd.json; do
      if [ -f "$icd" ]; then export VK_DRIVER_FILES="$icd"; echo "gpu_check: NVIDIA's Vulkan driver: $icd"; break; fi
    done
  fi
}

provider_check() {  # name, backend, cap in seconds, expected refusal (a text, or ""): runs scripts/provider_check.py
  local name="$1" backend="$2" cap="$3" refusal="$4" budget log rc last
  budget="$(left)"; [ "$budget" -gt "$cap" ] && budget="$cap"
  if [ "$budget" -lt 20 ]; then RESULT[$name]="skipped: out of time (the 8-minute budget)"; return; fi
  log="$LOGS/provider_$backend.log"
  echo "gpu_check: $name (up to ${budget} s)"
  (cd "$ROOT" && timeout "$budget" "$PY" scripts/provider_check.py "$backend") 2>&1 | tee "$log" | sed 's/^/  /'
  rc=${PIPESTATUS[0]}
  last="$(grep -v '^provider_check summary' "$log" | tail -1 | sed 's/^provider_check: //')"
  if [ "$rc" -eq 0 ]; then
    RESULT[$name]="ran: $(grep -m1 '^provider_check summary: ' "$log" | sed 's/^provider_check summary: //')"
  elif [ "$rc" -eq 4 ] && [ -n "$refusal" ] && grep -q "compute capability" <<<"$last"; then
    RESULT[$name]="ran: refused as it should be ($refusal): $last"
  elif [ "$rc" -eq 4 ] && [ -n "$refusal" ]; then
    RESULT[$name]="failed: refused for another reason than the GPU ($refusal): $last"
  elif [ "$rc" -eq 4 ]; then
    RESULT[$name]="skipped: $last"
  elif [ "$rc" -eq 124 ]; then
    RESULT[$name]="failed: timed out after ${budget} s (see $log)"
  elif [ "$rc" -eq 1 ]; then
    RESULT[$name]="failed: $(grep -m1 '^provider_check summary: ' "$log" | sed 's/^provider_check summary: //') (see $log)"
  else
    RESULT[$name]="failed: $last (exit code $rc, see $log)"
  fi
}

if "$PY" -c 'import onnxruntime_ep_webgpu' 2>/dev/null; then
  vulkan_setup
  if [ -n "$VULKAN_WHY" ]; then RESULT["WebGPU vs the CPU provider"]="skipped: $VULKAN_WHY"
  else provider_check "WebGPU vs the CPU provider" webgpu 150 ""; fi
else
  RESULT["WebGPU vs the CPU provider"]="skipped: onnxruntime-ep-webgpu is not installed and not in $WH/wheels (scripts/gpu_wheelhouse.sh adds it)"
fi

cap="$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | head -1 | tr -d ' ')"
case "$cap" in
  8.6|8.9|1[2-9].*) rtx=1 ;;
  *) rtx=0 ;;
esac
if [ "$rtx" -eq 0 ]; then  # obs-rvm refuses before loading the library, which would refuse this GPU too
  provider_check "TensorRT-RTX" tensorrt-rtx 60 "RTX 30/40/50 only, this GPU is compute capability ${cap:-unknown}"
elif "$PY" -c 'import onnxruntime_ep_nv_tensorrt_rtx' 2>/dev/null; then
  provider_check "TensorRT-RTX" tensorrt-rtx 150 ""
else
  RESULT["TensorRT-RTX"]="skipped: onnxruntime-ep-nv-tensorrt-rtx-cu12 is not installed (170 MB, not carried: pip install 'obs-rvm[tensorrt-rtx]' on this machine, then run this again)"
fi

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
