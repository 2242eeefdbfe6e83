"""Minimal stand-ins for the `tensorrt` and `pycuda.driver` modules, for testing OUR handling of what they do.

Only the API obs_rvm/engines/tensorrt.py and device_io.py call, with the behaviour documented by TensorRT 10 and
pycuda that the tests provoke: a factory that logs through the ILogger and then raises pybind11's TypeError
("factory function returned nullptr") when CUDA cannot start; deserialize_cuda_engine logging and returning None;
pycuda errors from the driver; pinned memory that must be freed while its context is current (pycuda leaks it when
freed into a detached context). Nothing here computes a frame: the GPU tests (test_tensorrt_gpu.py, test_device_io.py)
do that on a real GPU.
"""

from __future__ import annotations

import enum
import sys
import types
import weakref

import numpy as np
import pytest

from obs_rvm.engines import gpu as gpu_module
from obs_rvm.engines import tensorrt as trt_module
from obs_rvm.engines.gpu import GpuInfo

GPU = GpuInfo("NVIDIA T4 (stand-in)", (7, 5))


# -- tensorrt ------------------------------------------------------------------------------------------------------


def make_tensorrt(version: str = "10.13.0", strongly_typed: bool = True) -> types.ModuleType:
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    trt.behaviour = types.SimpleNamespace(builder=None, runtime=None, deserialize=None, execute=None, io={},
                                          built=b"engine bytes")
    """What the test wants: builder/runtime(logger) log before the factory fails, deserialize(logger, payload) and
    execute(logger) stand in for TensorRT's own calls (and log what it would)."""
    trt.created = {"networks": [], "loggers": [], "engines": [], "contexts": []}
    """What was made; engines and contexts as weak references, so a test sees when the last user lets go."""

    class Severity(enum.IntEnum):
        INTERNAL_ERROR = 0
        ERROR = 1
        WARNING = 2
        INFO = 3
        VERBOSE = 4

    class ILogger:
        def __init__(self) -> None:
            pass

    ILogger.Severity = Severity
    trt.ILogger = ILogger
    members = {"EXPLICIT_BATCH": 0, "STRONGLY_TYPED": 1} if strongly_typed else {"EXPLICIT_BATCH": 0}
    trt.NetworkDefinitionCreationFlag = enum.IntEnum("NetworkDefinitionCreationFlag", members)
    trt.BuilderFlag = enum.IntEnum("BuilderFlag", {"TF32": 7})
    trt.MemoryPoolType = enum.IntEnum("MemoryPoolType", {"WORKSPACE": 0})
    trt.TensorIOMode = enum.IntEnum("TensorIOMode", {"NONE": 0, "INPUT": 1, "OUTPUT": 2})
    trt.nptype = lambda dtype: dtype

    class IProgressMonitor:
        def __init__(self) -> None:
            pass

    trt.IProgressMonitor = IProgressMonitor

    def nullptr() -> TypeError:
        return TypeError("__init__(): incompatible constructor arguments... pybind11::init(): factory function "
                         "returned nullptr")

    class Builder:
        def __init__(self, logger) -> None:
            if trt.behaviour.builder:
                trt.behaviour.builder(logger)
                raise nullptr()
            self.logger = logger

        def create_network(self, flags: int):
            trt.created["networks"].append(flags)
            return object()

        def create_builder_config(self):
            return Config()

        def build_serialized_network(self, network, config):
            return trt.behaviour.built

    class TimingCache:
        def serialize(self) -> bytes:
            return b"timing"

    class Config:
        progress_monitor = None

        def set_memory_pool_limit(self, pool, size) -> None:
            pass

        def clear_flag(self, flag) -> None:
            pass

        def create_timing_cache(self, data: bytes):
            return TimingCache()

        def set_timing_cache(self, cache, ignore_mismatch: bool) -> bool:
            return True

        def get_timing_cache(self):
            return TimingCache()

    class OnnxParser:
        num_errors = 0

        def __init__(self, network, logger) -> None:
            pass

        def parse_from_file(self, path: str) -> bool:
            return True

    class Context:
        def __init__(self, logger, engine) -> None:
            self.logger = logger
            self.engine = engine  # as TensorRT's binding does: a context keeps its engine alive

        def set_input_shape(self, name, shape) -> bool:
            return True

        def set_tensor_address(self, name, address) -> bool:
            return True

        def execute_async_v3(self, stream_handle) -> bool:
            return trt.behaviour.execute(self.logger) if trt.behaviour.execute else True

    class Engine:
        def __init__(self, io: dict, logger) -> None:
            self.logger = logger
            self._names = list(io)
            self._io = io
            self.num_io_tensors = len(io)

        def get_tensor_name(self, i: int) -> str:
            return self._names[i]

        def get_tensor_shape(self, name):
            return self._io[name][0]

        def get_tensor_dtype(self, name):
            return self._io[name][1]

        def get_tensor_mode(self, name):
            return self._io[name][2]

        def create_execution_context(self):
            context = Context(self.logger, self)
            trt.created["contexts"].append(weakref.ref(context))
            return context

    class Runtime:
        def __init__(self, logger) -> None:
            if trt.behaviour.runtime:
                trt.behaviour.runtime(logger)
                raise nullptr()
            self.logger = logger
            trt.created["loggers"].append(logger)

        def deserialize_cuda_engine(self, payload: bytes):
            if trt.behaviour.deserialize:
                return trt.behaviour.deserialize(self.logger, payload)
            engine = Engine(trt.behaviour.io, self.logger)
            trt.created["engines"].append(weakref.ref(engine))
            return engine

    trt.Builder, trt.Runtime, trt.OnnxParser = Builder, Runtime, OnnxParser
    return trt


def graph_io(graph, trt) -> dict:
    """The I/O table a correct engine for `graph` reports."""
    io = {name: (tuple(shape), np.dtype(dtype), trt.TensorIOMode.INPUT)
          for name, (shape, dtype) in graph.inputs.items()}
    io.update({name: (tuple(shape), np.dtype(dtype), trt.TensorIOMode.OUTPUT)
               for name, (shape, dtype) in graph.outputs.items()})
    return io


# -- pycuda.driver ---------------------------------------------------------------------------------------------------


def make_pycuda() -> types.ModuleType:
    cuda = types.ModuleType("pycuda.driver")
    cuda.current: list = []
    """The context stack of this (single-threaded) test."""
    cuda.host_allocations: list = []
    cuda.leaked: list = []
    cuda.streams: list = []
    cuda.fail = {}
    """Function name -> exception to raise, as the driver would."""

    class Error(Exception):
        pass

    class MemoryError(Error):
        pass

    class LogicError(Error):
        pass

    cuda.Error, cuda.MemoryError, cuda.LogicError = Error, MemoryError, LogicError

    def check(name: str) -> None:
        if name in cuda.fail:
            raise cuda.fail[name]

    class PrimaryContext:
        detached = False

        def push(self) -> None:
            cuda.current.append(self)

        def detach(self) -> None:
            self.detached = True

    class Context:
        @staticmethod
        def pop() -> None:
            cuda.current.pop()

    class Device:
        def __init__(self, ordinal: int) -> None:
            pass

        def retain_primary_context(self):
            cuda.context = PrimaryContext()
            return cuda.context

    cuda.Context, cuda.Device = Context, Device
    cuda.init = lambda: check("init")

    class HostAllocation(bytearray):
        """pycuda's pinned memory, the `base` of a pagelocked array."""

        freed = False

        def free(self) -> None:
            if not cuda.current or cuda.current[-1].detached:
                cuda.leaked.append(self)  # pycuda: cannot free into a detached context
            self.freed = True

    def pagelocked_empty(shape, dtype):
        allocation = HostAllocation(int(np.prod(shape)) * np.dtype(dtype).itemsize)
        cuda.host_allocations.append(allocation)
        return np.ndarray(shape, dtype, buffer=allocation)

    class DeviceAllocation:
        def __init__(self, size: int) -> None:
            self.size = size

        def free(self) -> None:
            pass

        def __int__(self) -> int:
            return id(self)

    def mem_alloc(size: int):
        check("mem_alloc")
        return DeviceAllocation(size)

    class Stream:
        def __init__(self) -> None:
            self.pending: list[str] = []
            self.handle = id(self)
            cuda.streams.append(self)

        def synchronize(self) -> None:
            self.pending.clear()

    class Event:
        def record(self, stream=None) -> None:
            pass

        def time_till(self, other) -> float:
            return 0.1

    def memcpy_htod_async(dest, src, stream) -> None:
        check("memcpy_htod_async")
        stream.pending.append("htod")

    def memcpy_dtoh_async(dest, src, stream) -> None:
        check("memcpy_dtoh_async")
        stream.pending.append("dtoh")

    def memset_d8_async(dest, value, count, stream) -> None:
        check("memset_d8_async")
        stream.pending.append("memset")

    cuda.pagelocked_empty, cuda.mem_alloc, cuda.Stream, cuda.Event = pagelocked_empty, mem_alloc, Stream, Event
    cuda.memcpy_htod_async, cuda.memcpy_dtoh_async = memcpy_htod_async, memcpy_dtoh_async
    cuda.memset_d8_async = memset_d8_async
    return cuda


def install(monkeypatch: pytest.MonkeyPatch) -> types.SimpleNamespace:
    """`tensorrt` and `pycuda.driver` stand-ins in sys.modules and a Turing GPU found: TensorRTEngine can start."""
    trt, cuda = make_tensorrt(), make_pycuda()
    package = types.ModuleType("pycuda")
    package.driver = cuda
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    monkeypatch.setitem(sys.modules, "pycuda", package)
    monkeypatch.setitem(sys.modules, "pycuda.driver", cuda)
    found = lambda: (GPU, "")  # noqa: E731
    monkeypatch.setattr(gpu_module, "find_gpu", found)
    monkeypatch.setattr(trt_module, "find_gpu", found)
    return types.SimpleNamespace(trt=trt, cuda=cuda)
