"""The CUDA side of the TensorRT engine, through pycuda: context, pinned and device buffers, stream, stage events.

Kept apart from TensorRT so it is exercised on any NVIDIA GPU with pycuda, TensorRT installed or not: the GPU check
(scripts/gpu_check.sh) runs it for real where TensorRT is missing. Everything is allocated once; per frame only the
streamed tensors move. RVM's recurrent state never leaves the GPU: two buffer sets swap roles each frame (this
frame's r*o is the next frame's r*i).

pycuda raises its own exceptions (cuda.Error and subclasses); `cuda_errors` turns them into BackendError, so OBS
shows a sentence and falls back or passes the video through instead of an "unexpected LogicError".
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager

import numpy as np

from ..errors import BackendError

Table = Mapping[str, tuple[Sequence[int], object]]
"""Tensor name -> (shape, dtype)."""
STAGES = ("upload", "infer", "download")


def nbytes(shape: Sequence[int], dtype) -> int:
    return int(np.prod(shape)) * np.dtype(dtype).itemsize


@contextmanager
def cuda_errors(cuda, during: str, out_of_memory: str) -> Iterator[None]:
    """pycuda's errors as BackendError: `out_of_memory` for cuda.MemoryError, "CUDA error <during>: ..." else."""
    try:
        yield
    except cuda.MemoryError as e:
        raise BackendError(out_of_memory) from e
    except cuda.Error as e:
        raise BackendError(f"CUDA error {during}: {e}") from e


class PrimaryContext:
    """Device 0's primary context: the one TensorRT (CUDA runtime API) uses. Pushed around each call, so any thread
    can drive the engine; `detach` releases this hold on it."""

    def __init__(self, cuda) -> None:
        self._cuda = cuda
        cuda.init()
        self._ctx = cuda.Device(0).retain_primary_context()
        self.attached = True

    @contextmanager
    def current(self) -> Iterator[None]:
        self._ctx.push()
        try:
            yield
        finally:
            self._cuda.Context.pop()

    def detach(self) -> None:
        if self.attached:
            self.attached = False
            self._ctx.detach()


class DeviceIO:
    """Pinned host + device buffers for the streamed tensors, double-buffered state, one stream, four events.

    Create, use and free it with the context current. `host(name)` is the pinned buffer of a streamed tensor: the
    frame returned by `download` lives there until the next download, and is invalid after `free()`.
    """

    def __init__(self, cuda, streamed: Table, states: Sequence[tuple[Sequence[int], object]]) -> None:
        self._cuda = cuda
        self._device_allocations: list = []
        self._host: dict[str, np.ndarray] = {}
        self.device: dict[str, object] = {}
        self._states: list[list] = []
        self._turn = 0
        self.stream = cuda.Stream()
        self._events = [cuda.Event() for _ in range(len(STAGES) + 1)]
        try:
            for name, (shape, dtype) in streamed.items():
                self._host[name] = cuda.pagelocked_empty(tuple(shape), dtype)
                self.device[name] = self._alloc(nbytes(shape, dtype))
            self.state_bytes = [nbytes(shape, dtype) for shape, dtype in states]
            self._states = [[self._alloc(size) for size in self.state_bytes] for _ in range(2)]
        except BaseException:
            self.free()  # what was allocated before the failure (out of memory, usually)
            raise

    def _alloc(self, size: int):
        allocation = self._cuda.mem_alloc(size)
        self._device_allocations.append(allocation)
        return allocation

    def host(self, name: str) -> np.ndarray:
        return self._host[name]

    def upload(self, name: str, array: np.ndarray) -> None:
        """Copy into the pinned buffer, then queue its copy to the device. Waits for nothing."""
        np.copyto(self._host[name], array)
        self._cuda.memcpy_htod_async(self.device[name], self._host[name], self.stream)

    def download(self, name: str) -> np.ndarray:
        """Queue the device -> pinned copy and wait for the stream: the pinned buffer holds the result."""
        self._cuda.memcpy_dtoh_async(self._host[name], self.device[name], self.stream)
        self.mark(3)
        self.stream.synchronize()
        return self._host[name]

    def mark(self, stage: int) -> None:
        """Record event `stage` (0 before the upload, 1 after it, 2 after inference, 3 after the download)."""
        self._events[stage].record(self.stream)

    def states(self) -> tuple[list, list]:
        """(this frame's state inputs, its state outputs): device buffers, in STATE_INPUTS order."""
        return self._states[self._turn], self._states[1 - self._turn]

    def swap(self) -> None:
        """The outputs just written become the next frame's inputs."""
        self._turn = 1 - self._turn

    def zero_states(self) -> None:
        for buffers in self._states:
            for buffer, size in zip(buffers, self.state_bytes, strict=True):
                self._cuda.memset_d8_async(buffer, 0, size, self.stream)
        self.stream.synchronize()

    def stage_ms(self) -> dict[str, float]:
        """GPU time of the last frame's stages, from the events."""
        e = self._events
        return {name: e[i].time_till(e[i + 1]) for i, name in enumerate(STAGES)}

    def free(self) -> None:
        """Release every buffer now, with the context current. pinned memory is freed explicitly: left to the
        garbage collector after the context is detached, pycuda cannot free it and leaks it."""
        if self.stream is not None:
            self.stream.synchronize()
        for allocation in self._device_allocations:
            allocation.free()
        for array in self._host.values():
            array.base.free()  # pycuda: the HostAllocation behind a pagelocked array
        self._device_allocations, self._states, self._host, self.device = [], [], {}, {}
        self._events, self.stream = [], None
