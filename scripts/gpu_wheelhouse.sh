#!/usr/bin/env bash
# Run on a normal Linux machine with PyPI (no GPU needed). Collects into one folder (default ./gpu-wheelhouse, at most
# 56 MiB: with the checkout, ~6 MiB, it fits one GPU lease call's 64 MiB) what scripts/gpu_check.sh needs on a GPU
# machine with no network and nothing of obs-rvm's installed:
#   wheels/  obs-rvm's own wheel; pycuda compiled here for each Python in $PYTHONS (default "3.12 3.11") against
#            NVIDIA's CUDA 12.0 header wheels (runs on any driver for CUDA 12 or 13; no toolkit needed, see
#            obs_rvm/install/cuda.py); its dependencies; onnxsim, platformdirs, tqdm and pytest for those Pythons;
#            ONNX Runtime's WebGPU provider (onnxruntime-ep-webgpu, ~7 MB, one wheel for every Python 3.11+).
#   debs/    the Vulkan loader (libvulkan1, amd64, ~120 kB: apt-get download), unpacked by gpu_check.sh where the GPU
#            machine has none (WebGPU runs on Vulkan; NVIDIA's driver brings its own Vulkan driver).
#   data/    the test model and the four test clips (the GPU tests key real frames).
# Not TensorRT (its libraries come from pypi.nvidia.com and weigh gigabytes), not the TensorRT-RTX provider (170 MB:
# gpu_check.sh says how it can be checked), and not numpy, onnx, onnxruntime or OpenCV (tens of MiB each):
# gpu_check.sh uses the GPU machine's own and says so when one is missing.
# Usage: bash scripts/gpu_wheelhouse.sh [FOLDER]     (pycuda builds take about 2 minutes each, once: they are cached)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$(realpath -m "${1:-$ROOT/gpu-wheelhouse}")"
PYTHONS="${PYTHONS:-3.12 3.11}"
LIMIT_MIB=56
HEADERS_CUDA="12.0"   # the oldest CUDA 12 headers: what is built against them runs on every newer driver
DATA="${OBS_RVM_TEST_DATA:-}"
for candidate in "$DATA" "$ROOT/../shared" /work/shared; do
  if [ -n "$candidate" ] && [ -f "$candidate/models/rvm_mobilenetv3_tfjs_int8_dequant.onnx" ]; then DATA="$candidate"; break; fi
done
[ -f "$DATA/models/rvm_mobilenetv3_tfjs_int8_dequant.onnx" ] || {
  echo "gpu_wheelhouse: error: the test data (models/, media/clips/) not found: set OBS_RVM_TEST_DATA" >&2; exit 1; }
HOST_PY="$(command -v python3)"
[ -x "$ROOT/.venv/bin/python" ] && HOST_PY="$ROOT/.venv/bin/python"

find_python() {  # a python3.X that has its C headers: the system's, else one on the PATH, else a pyenv one
  local v="$1" p
  for p in "/usr/bin/python$v" "$(command -v "python$v" 2>/dev/null || true)" \
           $(ls -d "${PYENV_ROOT:-$HOME/.pyenv}"/versions/"$v".*/bin/"python$v" 2>/dev/null | sort -V | tail -1); do
    [ -n "$p" ] && [ -x "$p" ] || continue
    if "$p" -c 'import sysconfig, os, sys; sys.exit(not os.path.isfile(os.path.join(sysconfig.get_paths()["include"], "Python.h")))' 2>/dev/null; then
      echo "$p"; return 0
    fi
  done
  return 1
}

rm -rf "$OUT"
mkdir -p "$OUT/wheels" "$OUT/debs" "$OUT/data/models" "$OUT/data/media/clips"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
pip_dl=(-m pip download -q --disable-pip-version-check --only-binary=:all: --no-deps --implementation cp
        --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64
        --platform manylinux2014_x86_64 -d "$OUT/wheels")

echo "gpu_wheelhouse: obs-rvm's wheel"
"$HOST_PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$OUT/wheels" "$ROOT"

echo "gpu_wheelhouse: pure-Python dependencies"
"$HOST_PY" "${pip_dl[@]}" --python-version 3.12 pytools mako platformdirs typing-extensions tqdm rich markdown-it-py \
  mdurl pygments pytest pluggy iniconfig packaging

echo "gpu_wheelhouse: ONNX Runtime's WebGPU provider and the Vulkan loader"
"$HOST_PY" "${pip_dl[@]}" --python-version 3.12 "onnxruntime-ep-webgpu>=0.4"
if command -v apt-get >/dev/null && (cd "$OUT/debs" && apt-get download -q -oAPT::Architecture=amd64 libvulkan1:amd64 \
                                       >/dev/null 2>&1); then
  ls "$OUT/debs"
else
  echo "gpu_wheelhouse: warning: could not fetch libvulkan1's .deb (apt-get download libvulkan1): gpu_check.sh's WebGPU" \
       "check then needs a GPU machine with the Vulkan loader" >&2
fi

for v in $PYTHONS; do
  py="$(find_python "$v" || true)"
  if [ -z "$py" ]; then
    echo "gpu_wheelhouse: warning: no Python $v with its headers here: no pycuda for $v (install python$v-dev)" >&2
    continue
  fi
  echo "gpu_wheelhouse: Python $v ($py): compiled dependencies, pycuda against CUDA $HEADERS_CUDA's headers"
  "$HOST_PY" "${pip_dl[@]}" --python-version "$v" markupsafe siphash24 onnxsim
  "$py" -m venv "$WORK/venv$v"
  started=$SECONDS
  PYTHONPATH="$ROOT:$ROOT/tests" "$WORK/venv$v/bin/python" - "$WORK" "$HEADERS_CUDA" "$OUT/wheels" <<'EOF'
import shutil, sys
from pathlib import Path
from obs_rvm.install import cuda
from cuda_standin import make_libcuda

work, version, out = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3])
python = Path(sys.executable)
packages = cuda.GpuPackages(tuple(int(p) for p in version.split(".")))
cache = packages.wheel_cache("%d.%d" % sys.version_info[:2])
wheels = sorted(cache.glob("pycuda-*.whl")) if cache.is_dir() else []
if not wheels:
    # Linking needs a libcuda.so; with no driver here, the test stand-in (every driver symbol) serves.
    include, why = cuda.collect_headers(python, packages, work / f"headers{sys.version_info[1]}")
    if why:
        sys.exit(f"gpu_wheelhouse: error: {why}")
    driver = make_libcuda([Path(p) for p in include], work / f"driver{sys.version_info[1]}")
    wheel, why = cuda.build_pycuda(python, packages, driver, cache)
    if wheel is None:
        sys.exit(f"gpu_wheelhouse: error: {why}")
    wheels = [wheel]
shutil.copy(wheels[-1], out)
print(f"gpu_wheelhouse: {wheels[-1].name}")
EOF
  echo "gpu_wheelhouse: pycuda for Python $v ready ($((SECONDS - started)) s)"
done

for file in rvm_mobilenetv3_tfjs_int8_dequant.onnx LICENSE-GPL-3.0.txt README.md; do
  [ -f "$DATA/models/$file" ] && cp "$DATA/models/$file" "$OUT/data/models/"
done
for clip in again.mkv book.mkv help.mkv thanks.mkv LICENSE-CC-BY-4.0.txt; do
  [ -f "$DATA/media/clips/$clip" ] && cp "$DATA/media/clips/$clip" "$OUT/data/media/clips/"
done

size_mib=$(( $(du -sb "$OUT" | cut -f1) / 1048576 ))
ls -1 "$OUT/wheels"
echo "gpu_wheelhouse: $OUT: ${size_mib} MiB ($(ls "$OUT/wheels" | wc -l) wheels, the Vulkan loader, test model and clips)"
if [ "$size_mib" -gt "$LIMIT_MIB" ]; then
  echo "gpu_wheelhouse: error: over ${LIMIT_MIB} MiB: build for fewer Pythons (PYTHONS=3.12)" >&2
  exit 1
fi
