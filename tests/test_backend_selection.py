"""Backend selection against what this machine really has: each missing piece (tensorrt, pycuda, the NVIDIA driver,
onnxruntime's CUDA provider) must be named in the fallback notes, and an explicit TensorRT request that cannot be met
must be an error, never a silent CPU run. Nothing is faked: on CI these pieces are really absent; on a GPU machine
the same tests check that TensorRT is chosen."""

from __future__ import annotations

import ctypes
import importlib.util
import logging
import subprocess
import sys

import numpy as np
import onnxruntime as ort
import pytest

from obs_rvm.engines import Candidate, plan
from obs_rvm.engines.gpu import DRIVER_LIBRARY, GpuInfo, find_gpu
from obs_rvm.engines.tensorrt import TensorRTEngine, availability
from obs_rvm.errors import BackendError
from obs_rvm.graph import GraphSpec, Variant, prepare
from obs_rvm.matting import MattingSession, SessionOptions, auto_downsample_ratio
from obs_rvm.models import resolve_model

from paths import ASTRONAUT


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _driver_present() -> bool:
    try:
        ctypes.CDLL(DRIVER_LIBRARY)
    except OSError:
        return False
    return True


TRT_USABLE = not availability()[1]
needs_no_tensorrt = pytest.mark.skipif(TRT_USABLE, reason="TensorRT can run here")


def test_gpu_probe_agrees_with_the_driver():
    gpu, why = find_gpu()
    if not _driver_present():
        assert gpu is None and why == f"no NVIDIA driver ({DRIVER_LIBRARY} not found)"
    elif gpu is None:
        assert why.startswith(("no CUDA device", "CUDA device 0"))
    else:
        assert why == "" and gpu.name and gpu.compute_capability >= (3, 0)


def test_tensorrt_availability_names_every_missing_piece():
    gpu, reasons = availability()
    text = "; ".join(reasons)
    assert ("tensorrt not installed" in text) == (not _installed("tensorrt"))
    assert ("pycuda not installed" in text) == (not _installed("pycuda"))
    if not _installed("tensorrt") or not _installed("pycuda"):
        assert "pip install 'obs-rvm[gpu]'" in text
    assert (gpu is None) == (find_gpu()[0] is None)
    if gpu is None:
        assert find_gpu()[1] in reasons
    assert all(reason and "\n" not in reason for reason in reasons)


def test_auto_plan_orders_candidates_and_explains_skips(caplog):
    with caplog.at_level(logging.INFO, logger="obs_rvm"):
        candidates, notes = plan("auto")
    assert candidates[-1] == Candidate("onnxruntime", gpu=False)
    _, reasons = availability()
    if reasons:
        assert all(c.backend != "tensorrt" for c in candidates)
        note = next(n for n in notes if n.startswith("TensorRT skipped: "))
        assert all(reason in note for reason in reasons)
    else:
        assert candidates[0].backend == "tensorrt" and candidates[0].gpu
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        assert "onnxruntime CUDA skipped: onnxruntime has no CUDA provider (onnxruntime-gpu not installed)" in notes
        assert Candidate("onnxruntime", gpu=True) not in candidates
    elif find_gpu()[0] is None:
        assert f"onnxruntime CUDA skipped: {find_gpu()[1]}" in notes
    for note in notes:
        assert note in caplog.text  # every fallback is logged, not only shown


def test_explicit_onnxruntime_never_plans_tensorrt():
    candidates, _ = plan("onnxruntime")
    assert all(c.backend == "onnxruntime" for c in candidates)


def test_unknown_backend_is_a_clear_error():
    with pytest.raises(BackendError, match="unknown backend 'rocm': choose one of auto, tensorrt, tensorrt-rtx, cuda, "
                                           "webgpu, openvino, cpu, onnxruntime"):
        plan("rocm")


@needs_no_tensorrt
def test_explicit_tensorrt_request_is_an_error_not_a_cpu_run():
    _, reasons = availability()
    with pytest.raises(BackendError) as error:
        plan("tensorrt")
    message = str(error.value)
    assert message.startswith("the tensorrt backend cannot run here: ")
    assert all(reason in message for reason in reasons) and "backend auto" in message
    with pytest.raises(BackendError, match="the tensorrt backend cannot run here"):
        MattingSession(SessionOptions(backend="tensorrt"))
    graph = prepare(resolve_model(None), GraphSpec(64, 48, 0.5, Variant.TRANSPARENT))
    with pytest.raises(BackendError, match="TensorRT cannot run here: "):
        TensorRTEngine(graph)


@needs_no_tensorrt
@pytest.mark.parametrize("command", [["process", str(ASTRONAUT), "-o", "{out}"], ["bench", "--frames", "2"]])
def test_cli_tensorrt_request_fails_with_one_line_and_writes_nothing(tmp_path, command):
    out = tmp_path / "keyed.png"
    args = [a.format(out=out) for a in command]
    result = subprocess.run([sys.executable, "-m", "obs_rvm.cli", *args, "--backend", "tensorrt"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 1
    assert result.stderr.startswith("obs-rvm: error: the tensorrt backend cannot run here: ")
    assert result.stderr.count("\n") == 1 and result.stdout == ""
    assert not out.exists()


def test_session_reports_the_backend_and_why_better_ones_were_skipped():
    messages: list[str] = []
    session = MattingSession(SessionOptions(), on_status=messages.append)
    frame = np.dstack([np.zeros((48, 64, 3), np.uint8), np.full((48, 64), 255, np.uint8)])
    session.process(frame, 0.0)
    _, reasons = availability()
    if reasons:
        assert session.status.backend.startswith("onnxruntime")
        assert any(note.startswith("TensorRT skipped: ") for note in session.status.notes)
    assert messages and messages[0] == "preparing the model for 64x48"
    session.close()


@pytest.mark.parametrize(("capability", "fast"), [((5, 2), False), ((5, 3), False), ((6, 0), False), ((6, 1), False),
                                                  ((6, 2), False), ((7, 0), False), ((7, 2), False), ((7, 5), True),
                                                  ((8, 9), True), ((12, 0), True)])
def test_tensorrt_fp16_only_on_gpus_tensorrt_supports(capability, fast):
    """TensorRT 10.5+ runs on 7.5+ only, where FP16 is full rate: older GPUs, full-rate FP16 or not, get no FP16
    TensorRT engine (they get no TensorRT at all)."""
    gpu = GpuInfo("GPU", capability)
    assert gpu.fast_fp16 is fast and gpu.tensorrt_supported is fast


def test_gpu_candidates_get_rvms_512_px_guidance():
    assert auto_downsample_ratio(1080, 1920, gpu=True) == 0.25
    assert auto_downsample_ratio(720, 1280, gpu=True) == 0.375
    assert auto_downsample_ratio(2160, 3840, gpu=True) == 0.125
    assert auto_downsample_ratio(1080, 1920, gpu=False) == 0.125


def _cannot_run(backend: str) -> bool:
    try:
        plan(backend)
    except BackendError:
        return True
    return False


@pytest.mark.parametrize("backend", ["tensorrt-rtx", "cuda", "webgpu", "openvino"])
def test_cli_request_for_a_provider_that_cannot_run_fails_with_one_line(tmp_path, backend):
    """Here (no GPU, and plugin wheels missing or without a device) each is an error naming what to do, before any
    output, as for TensorRT."""
    if not _cannot_run(backend):
        pytest.skip(f"the {backend} backend can run here")
    out = tmp_path / "keyed.png"
    for command in (["process", str(ASTRONAUT), "-o", str(out)], ["bench", "--frames", "2"]):
        result = subprocess.run([sys.executable, "-m", "obs_rvm.cli", *command, "--backend", backend],
                                capture_output=True, text=True, timeout=120)
        assert result.returncode == 1
        assert result.stderr.startswith(f"obs-rvm: error: the {backend} backend cannot run here: ")
        assert "Choose backend auto" in result.stderr and result.stderr.count("\n") == 1 and result.stdout == ""
    assert not out.exists()
