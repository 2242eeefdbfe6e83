"""scripts/gpu_check.sh where there is no GPU (CI, this machine): every check skipped with the reason, exit code 0;
and on a GPU machine without its wheelhouse: a failed set-up that says how to make one. Its real run needs a GPU.
scripts/provider_check.py, its plugin-provider part, runs here against itself (the CPU provider) and refuses a
provider that cannot run here with the reason and exit status 4."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from obs_rvm.engines.gpu import find_gpu
from obs_rvm.engines.plugin_eps import SOFTWARE_ADAPTER_VARIABLE

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.sh"
CHECKS = ("set-up", "CUDA binding on the GPU", "WebGPU vs the CPU provider", "TensorRT-RTX",
          "TensorRT engines vs onnxruntime", "bench 1280x720", "bench 1920x1080")
PROVIDER_CHECK = SCRIPT.with_name("provider_check.py")


def run(tmp_path: Path, path: str, *args: str) -> subprocess.CompletedProcess:
    env = {"PATH": path, "HOME": str(tmp_path), "GPU_CHECK_LOGS": str(tmp_path / "logs")}
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, env=env, timeout=120)


def summary(result: subprocess.CompletedProcess) -> dict[str, str]:
    lines = result.stdout.split("gpu_check summary", 1)[1].splitlines()[1:]
    return dict(line.strip().split(": ", 1) for line in lines if line.strip())


def test_without_a_gpu_every_check_is_skipped():
    if shutil.which("nvidia-smi", path="/usr/bin:/bin"):
        pytest.skip("this machine has nvidia-smi")
    result = run(Path("/tmp"), "/usr/bin:/bin")
    assert result.returncode == 0, result.stdout + result.stderr
    assert summary(result) == dict.fromkeys(CHECKS, "skipped: no NVIDIA GPU")


def test_a_gpu_without_the_wheelhouse_is_a_failed_set_up(tmp_path):
    smi = tmp_path / "bin" / "nvidia-smi"
    smi.parent.mkdir()
    smi.write_text('#!/bin/sh\n[ "$1" = -L ] && echo "GPU 0: NVIDIA T4 (UUID: GPU-1)"\nexit 0\n')
    smi.chmod(0o755)
    result = run(tmp_path, f"{smi.parent}{os.pathsep}/usr/bin:/bin", str(tmp_path / "no-wheelhouse"))
    assert result.returncode == 1
    checks = summary(result)
    assert checks["set-up"].startswith(f"failed: no wheelhouse at {tmp_path / 'no-wheelhouse'} (make one with "
                                       f"scripts/gpu_wheelhouse.sh")
    assert all(checks[c] == "skipped: set-up failed" for c in CHECKS[1:])


def provider_check(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != SOFTWARE_ADAPTER_VARIABLE}
    return subprocess.run([sys.executable, str(PROVIDER_CHECK), *args], capture_output=True, text=True, env=env,
                          timeout=300)


def test_provider_check_prints_the_numbers_and_its_verdict():
    result = provider_check("cpu", "--sizes", "64x48", "--frames", "4", "--allow-cpu-device")
    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "provider_check: cpu plans onnxruntime (CPU) (FP32: max <= 1 level)"
    assert re.fullmatch(r"provider_check: 64x48 ratio 1, 4 frames on onnxruntime on CPU .*: first frame \d+ ms, then "
                        r"[\d.]+ ms a frame \(CPU provider [\d.]+ ms\); \|alpha - CPU\| mean 0\.000 max 0, \|rgb - "
                        r"CPU\| mean 0\.000 max 0: matches", lines[1]), lines[1]
    assert re.fullmatch(r"provider_check summary: onnxruntime on CPU .*: 64x48 [\d.]+ ms a frame \(CPU [\d.]+ ms, "
                        r"alpha max 0 mean 0\.000 levels off\): matches the CPU provider", lines[2]), lines[2]


def test_provider_check_refuses_what_cannot_run_here():
    if find_gpu()[0] is not None:
        pytest.skip("this machine has an NVIDIA GPU")
    result = provider_check("tensorrt-rtx")
    assert result.returncode == 4 and result.stdout == ""
    assert result.stderr.strip().splitlines()[-1].startswith("provider_check: the tensorrt-rtx backend cannot run "
                                                             "here: ")
    result = provider_check("cpu", "--sizes", "64x48")
    assert result.returncode == 4
    assert result.stderr.strip() == "provider_check: cpu offers only onnxruntime (CPU) here, not a GPU"
