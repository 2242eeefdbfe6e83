"""The CUDA side of the TensorRT engine (device_io.py) against a real NVIDIA GPU through real pycuda, TensorRT or not.

Skipped without pycuda or without a GPU (CI has neither). scripts/gpu_check.sh runs these on a GPU machine, where they
prove the parts TensorRT relies on: the primary context driven from another thread, pinned buffers, the state
double-buffering, the stage events, and that free() gives the memory back.
"""

from __future__ import annotations

import importlib.util
import threading

import numpy as np
import pytest

from obs_rvm.engines.device_io import DeviceIO, PrimaryContext, cuda_errors, nbytes
from obs_rvm.engines.gpu import find_gpu
from obs_rvm.errors import BackendError


def _why_not() -> str:
    if importlib.util.find_spec("pycuda") is None:
        return "pycuda not installed"
    return find_gpu()[1]


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(bool(_why_not()), reason=f"needs pycuda and a GPU: {_why_not()}")]

FRAME_SHAPE = (720, 1280, 4)
STATES = [((1, 16, 144, 256), np.float32), ((1, 20, 72, 128), np.float32)]


@pytest.fixture
def cuda():
    import pycuda.driver

    return pycuda.driver


@pytest.fixture
def context(cuda):
    ctx = PrimaryContext(cuda)
    yield ctx
    ctx.detach()


def make_io(cuda) -> DeviceIO:
    return DeviceIO(cuda, {"frame": (FRAME_SHAPE, np.uint8), "output": (FRAME_SHAPE, np.uint8)}, STATES)


def test_pinned_round_trip_from_another_thread(cuda, context):
    """Made on this thread, driven from a worker (as OBS's filter thread does): the frame goes up, is copied on the
    device into the output buffer, and comes back identical."""
    with context.current():
        io = make_io(cuda)
    frame = np.random.default_rng(1).integers(0, 256, FRAME_SHAPE, dtype=np.uint8)
    got: list[np.ndarray] = []

    def work() -> None:
        with context.current():
            io.mark(0)
            io.upload("frame", frame)
            io.mark(1)
            cuda.memcpy_dtod_async(io.device["output"], io.device["frame"], frame.nbytes, io.stream)
            io.mark(2)
            got.append(io.download("output").copy())

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    assert got and np.array_equal(got[0], frame)
    with context.current():
        stages = io.stage_ms()
        io.free()
    assert set(stages) == {"upload", "infer", "download"}
    assert all(ms >= 0 for ms in stages.values()) and stages["upload"] > 0, stages


def test_state_buffers_swap_roles_and_reset_zeroes_both(cuda, context):
    with context.current():
        io = make_io(cuda)
        inputs, outputs = io.states()
        assert len(inputs) == len(outputs) == len(STATES)
        assert {int(b) for b in inputs}.isdisjoint(int(b) for b in outputs)
        written = np.full(STATES[0][0], 0.5, np.float32)
        cuda.memcpy_htod(outputs[0], written)  # what the engine writes as r1o this frame
        io.swap()
        assert [int(b) for b in io.states()[0]] == [int(b) for b in outputs], "r*o becomes the next r*i"
        back = np.empty_like(written)
        cuda.memcpy_dtoh(back, io.states()[0][0])
        assert np.array_equal(back, written)
        io.zero_states()
        for buffers in io.states():
            cuda.memcpy_dtoh(back, buffers[0])
            assert not back.any()
        io.free()


def allocation_at(cuda, address: int) -> tuple[int, int] | None:
    """(base, size) of the device allocation holding `address` as the driver records it (cuMemGetAddressRange), or
    None where the driver has none. The driver's own record of this process's memory: what other processes on a
    shared GPU allocate meanwhile does not change it, as it changes the GPU's free memory."""
    try:
        base, size = cuda.mem_get_address_range(address)
    except cuda.Error:  # CUDA_ERROR_NOT_FOUND: no allocation there (any more)
        return None
    return int(base), int(size)


def test_free_gives_the_device_memory_back(cuda, context):
    frame, state = ((2160, 3840, 4), np.uint8), ((64, 1024, 1024), np.float32)
    with context.current():
        io = DeviceIO(cuda, {"frame": frame}, [state])
        inputs, outputs = io.states()
        buffers = [int(io.device["frame"]), int(inputs[0]), int(outputs[0])]
        held = [allocation_at(cuda, address) for address in buffers]
        io.free()
        after = [allocation_at(cuda, address) for address in buffers]
    wanted = [nbytes(*frame), nbytes(*state), nbytes(*state)]  # the state twice: double-buffered
    assert None not in held and [base for base, _ in held] == buffers, ("an allocation of its own each", held)
    assert all(size >= want for (_, size), want in zip(held, wanted)), (held, wanted)
    assert after == [None] * len(buffers), ("free() gave each allocation back to the driver", after)


def test_driver_errors_become_backend_errors(cuda, context):
    with context.current(), pytest.raises(BackendError, match=r"^GPU out of memory$"), \
            cuda_errors(cuda, "while testing", "GPU out of memory"):
        cuda.mem_alloc(1 << 50)  # a petabyte
