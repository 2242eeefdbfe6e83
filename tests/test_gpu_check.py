"""scripts/gpu_check.sh where there is no GPU (CI, this machine): every check skipped with the reason, exit code 0;
and on a GPU machine without its wheelhouse: a failed set-up that says how to make one. Its real run needs a GPU."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "gpu_check.sh"
CHECKS = ("set-up", "CUDA binding on the GPU", "TensorRT engines vs onnxruntime", "bench 1280x720", "bench 1920x1080")


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
