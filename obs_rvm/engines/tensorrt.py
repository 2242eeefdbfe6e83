"""TensorRT backend: the prepared graph (pre-processing, RVM, compositing) built into an engine and run with pycuda.

Written against TensorRT 10+ named-tensor API (set_input_shape, set_tensor_address, execute_async_v3) and strongly
typed networks, so TensorRT 10.x and 11.x build the same engine: precision comes from the graph (see fp16.py), not
from builder flags (TensorRT 11 removed BuilderFlag.FP16). pycuda provides device memory, pinned host buffers, the
stream and the events that time each stage (device_io.py).

Everything is allocated once per engine. Per frame only the RGBA frame goes up and the keyed frame comes down;
background inputs go up only when a different array object arrives; RVM's recurrent state never leaves the GPU.

Filters (cameras) keying the same prepared graph share one deserialized engine, its runtime and its logger (shared.py);
each has its own execution context, buffers, stream, recurrent state and uploaded background. Runs are serialized by
turns.py and `run` clears the logger before executing, so a failure reports the running filter's reason; filters
keying different graphs have separate loggers altogether.

tensorrt and pycuda are imported only when needed, so this module loads (and explains their absence) anywhere.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..errors import BackendError, InputError
from ..graph import FRAME, GRAPH_VERSION, OUTPUT, STATE_INPUTS, STATE_OUTPUTS, PreparedGraph
from .base import Engine
from .device_io import DeviceIO, PrimaryContext, cuda_errors
from .gpu import MIN_TENSORRT_CAPABILITY, GpuInfo, find_gpu
from .shared import SharedObjects
from .trt_cache import EngineCache

log = logging.getLogger("obs_rvm")

StatusFn = Callable[[str], None]
MIN_TENSORRT = 10
WORKSPACE_BYTES = 1 << 30
"""Scratch memory TensorRT may use while choosing kernels; RVM needs far less, and 1 GiB fits 4 GB cards."""
INSTALL_HINT = "installer/install.sh sets them up, or pip install 'obs-rvm[gpu]' with the CUDA toolkit"
PROGRESS_INTERVAL_S = 2.0


def _import_tensorrt():
    import tensorrt

    return tensorrt


def _import_pycuda():
    import pycuda.driver

    return pycuda.driver


def _import_problem(package: str, error: BaseException) -> str | None:
    """None when the package is simply not installed; otherwise why an installed package fails to load."""
    if isinstance(error, ModuleNotFoundError) and (error.name or "").split(".")[0] == package:
        return None
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return f"{package} is installed but cannot load ({first_line})"


def availability() -> tuple[GpuInfo | None, list[str]]:
    """(the GPU, []) when TensorRT can run here; otherwise every reason it cannot, each one a user can act on."""
    missing: list[str] = []
    reasons: list[str] = []
    for package, load in (("tensorrt", _import_tensorrt), ("pycuda", _import_pycuda)):
        try:
            module = load()
        except (ImportError, OSError) as e:
            problem = _import_problem(package, e)
            if problem:
                reasons.append(problem)
            else:
                missing.append(f"{package} not installed")
            continue
        version = str(getattr(module, "__version__", "0")) if package == "tensorrt" else ""
        if version and int(version.split(".")[0] or 0) < MIN_TENSORRT:
            reasons.append(f"TensorRT {version} is too old: need {MIN_TENSORRT} or newer ({INSTALL_HINT})")
    if missing:
        reasons.insert(0, f"{', '.join(missing)} ({INSTALL_HINT})")
    gpu, why = find_gpu()
    if gpu is None:
        reasons.append(why)
    elif not gpu.tensorrt_supported:
        major, minor = MIN_TENSORRT_CAPABILITY
        reasons.append(f"{gpu.describe()} is too old for TensorRT 10.5+ (it needs compute capability {major}.{minor} "
                       f"or newer: Turing, GeForce 16/RTX 20 and later)")
    return gpu, reasons


def engine_fields(graph: PreparedGraph, gpu: GpuInfo, tensorrt_version: str) -> dict[str, object]:
    """Everything that makes one engine differ from another: the engine cache key."""
    spec = graph.spec
    major, minor = gpu.compute_capability
    return {"gpu": gpu.name, "compute_capability": f"{major}.{minor}", "tensorrt": tensorrt_version,
            "model_sha256": graph.model_sha256, "width": spec.width, "height": spec.height,
            "downsample_ratio": spec.downsample_ratio, "background": spec.variant.value,
            "precision": "fp16" if spec.fp16 else "fp32", "graph_version": GRAPH_VERSION,
            "graph": graph.cache_key, "matte_grow": spec.matte_grow, "feather": spec.feather,
            "layers": spec.layers}


def timing_cache_fields(gpu: GpuInfo, tensorrt_version: str) -> dict[str, object]:
    major, minor = gpu.compute_capability
    return {"kind": "timing cache", "gpu": gpu.name, "compute_capability": f"{major}.{minor}",
            "tensorrt": tensorrt_version}


def out_of_memory_message(graph: PreparedGraph, during: str) -> str:
    spec = graph.spec
    return (f"GPU out of memory {during} ({spec.width}x{spec.height}, downsample {spec.downsample_ratio:g}): lower "
            f"the resolution or the downsample ratio, or close other programs using the GPU")


OUT_OF_MEMORY = ("out of memory", "outofmemory", "could not be allocated", "not enough free memory")
"""TensorRT's wordings: "Error Code 2: OutOfMemory (...)", "Requested amount of GPU memory (N bytes) could not be
allocated. There may not be enough free memory for allocation to succeed." (the latter logged as a WARNING)."""


def _is_out_of_memory(messages: list[str]) -> bool:
    text = " ".join(messages).lower()
    return any(s in text for s in OUT_OF_MEMORY)


def _trt_logger(trt):
    """A logger for one loaded engine. Since TensorRT 8.2 the logger given to a builder or runtime is the one used
    for all it creates, execution contexts included (only the global getLogger() of plugins keeps the first, and
    TensorRT warns that it does), so each loaded engine keeps its own last errors and warnings: its failures say why,
    and filters keying different graphs never report each other's. TensorRT may call it from its own threads."""
    severity = trt.ILogger.Severity

    class Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self._lock = threading.Lock()
            self.errors: list[str] = []
            self.warnings: list[str] = []

        def log(self, level, message) -> None:
            if level in (severity.INTERNAL_ERROR, severity.ERROR):
                with self._lock:
                    self.errors = [*self.errors[-9:], message]
                log.warning("TensorRT: %s", message)  # the BackendError that follows is the error
            elif level == severity.WARNING:
                with self._lock:
                    self.warnings = [*self.warnings[-9:], message]
                log.info("TensorRT: %s", message)
            else:
                log.debug("TensorRT: %s", message)

        def clear(self) -> None:
            with self._lock:
                self.errors, self.warnings = [], []

        def reason(self) -> str:
            return "; ".join(self.errors) or "no reason given"

        def out_of_memory(self) -> bool:
            return _is_out_of_memory(self.errors + self.warnings)

    return Logger()


def _create(factory, logger, what: str):
    """trt.Builder / trt.Runtime. When CUDA cannot start, TensorRT logs why and its binding raises pybind11's
    TypeError ("... factory function returned nullptr"): that becomes a BackendError with TensorRT's reason."""
    try:
        return factory(logger)
    except TypeError as e:
        raise BackendError(f"TensorRT could not create its {what}: {'; '.join(logger.errors) or e}") from e


def _network_flags(trt) -> int:
    """Strongly typed: the graph's own types decide precision. Always on in TensorRT 11, which accepts the flag; a
    release without the enum member gets no flags (then strong typing is the only mode)."""
    flag = getattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED", None)
    return 0 if flag is None else 1 << int(flag)


def _progress_monitor(trt, report: StatusFn, label: str):
    """Turns TensorRT's build phases into a status line every few seconds. TensorRT calls it from its own threads."""

    class Monitor(trt.IProgressMonitor):
        def __init__(self) -> None:
            trt.IProgressMonitor.__init__(self)
            self._lock = threading.Lock()
            self._phases: dict[str, list[int]] = {}
            self._last = 0.0

        def phase_start(self, phase_name, parent_phase, num_steps) -> None:
            with self._lock:
                self._phases[phase_name] = [0, num_steps]
                self._report(force=parent_phase is None)

        def step_complete(self, phase_name, step) -> bool:
            with self._lock:
                if phase_name in self._phases:
                    self._phases[phase_name][0] = step + 1
                self._report()
            return True

        def phase_finish(self, phase_name) -> None:
            with self._lock:
                self._phases.pop(phase_name, None)

        def _report(self, force: bool = False) -> None:
            now = time.monotonic()
            if not self._phases or (not force and now - self._last < PROGRESS_INTERVAL_S):
                return
            self._last = now
            parts = [f"{name} {done}/{total}" for name, (done, total) in self._phases.items()]
            try:
                report(f"{label}: {' > '.join(parts)}")
            except Exception:  # a status display must never abort the build
                log.exception("status callback failed")

    return Monitor()


def build_engine(graph: PreparedGraph, gpu: GpuInfo, *, on_status: StatusFn, cache: EngineCache,
                 logger=None) -> bytes:
    """Build the serialized engine for a prepared graph (tens of seconds), reusing and updating the timing cache."""
    trt = _import_tensorrt()
    logger = logger or _trt_logger(trt)
    logger.clear()
    spec = graph.spec
    label = f"building TensorRT engine ({spec.width}x{spec.height}, {'FP16' if spec.fp16 else 'FP32'})"
    builder = _create(trt.Builder, logger, "builder")
    network = builder.create_network(_network_flags(trt))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(graph.path)):
        errors = "; ".join(parser.get_error(i).desc() for i in range(parser.num_errors))
        raise BackendError(f"TensorRT engine build failed: the ONNX parser rejected the prepared graph ({errors})")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    # TF32 would round FP32 maths to 10-bit mantissas: the FP32 path must match onnxruntime, and the FP16 graph's
    # float32 refiner is float32 precisely because it needs the precision.
    config.clear_flag(trt.BuilderFlag.TF32)
    timing_fields = timing_cache_fields(gpu, trt.__version__)
    timing_store = EngineCache(cache.folder, suffix=".timing")
    timing = config.create_timing_cache(timing_store.load(timing_fields) or b"")
    if not config.set_timing_cache(timing, False):
        timing = config.create_timing_cache(b"")  # made on another device: start afresh
        config.set_timing_cache(timing, False)
    config.progress_monitor = _progress_monitor(trt, on_status, label)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        if logger.out_of_memory():
            raise BackendError(out_of_memory_message(graph, "while building the TensorRT engine"))
        raise BackendError(f"TensorRT engine build failed: {logger.reason()}")
    try:
        timing_store.store(timing_fields, bytes(config.get_timing_cache().serialize()))
    except OSError as e:
        log.info("cannot save TensorRT's timing cache (%s): the next build takes longer", e)
    return bytes(serialized)


@dataclass
class _Loaded:
    """What the filters keying one prepared graph share: the deserialized engine (weights and kernels, loaded or
    built once), the runtime it came from, and the logger TensorRT reports to for every context made from it. The
    activation memory belongs to each filter's execution context."""

    runtime: Any
    engine: Any
    logger: Any

    def drop(self) -> None:
        """The engine, then its runtime: run by the last filter using them, with the CUDA context current."""
        self.engine = None
        self.runtime = None


_engines: SharedObjects[str, _Loaded] = SharedObjects()
"""Engine cache file -> the engine loaded from it: the file's key holds everything that makes one engine differ."""


class TensorRTEngine(Engine):
    backend = "tensorrt"

    def __init__(self, graph: PreparedGraph, *, on_status: StatusFn | None = None,
                 cache: EngineCache | None = None) -> None:
        super().__init__(graph)
        gpu, reasons = availability()
        if gpu is None or reasons:
            raise BackendError(f"TensorRT cannot run here: {'; '.join(reasons)}")
        self.gpu = gpu
        self.device = f"CUDA ({gpu.name}, {'FP16' if graph.spec.fp16 else 'FP32'})"
        self.built = False
        """True when this engine was built now rather than loaded from the cache or shared with another filter."""
        trt, cuda = _import_tensorrt(), _import_pycuda()
        self._cuda = cuda
        self._shared_key: str | None = None
        self._logger: Any = None
        self._io: DeviceIO | None = None
        self._context = None
        oom = out_of_memory_message(graph, "while loading the TensorRT engine")
        with cuda_errors(cuda, f"starting on {gpu.name}", oom):
            self._ctx = PrimaryContext(cuda)
        try:
            with cuda_errors(cuda, "while loading the TensorRT engine", oom), self._ctx.current():
                try:
                    self._open(trt, cache or EngineCache(), on_status or (lambda message: None))
                    self._allocate()
                except BaseException:
                    self._free()
                    raise
        except BaseException:
            self._ctx.detach()
            raise

    # -- set-up ------------------------------------------------------------------------------------------------

    def _open(self, trt, cache: EngineCache, on_status: StatusFn) -> None:
        """The graph's engine, loaded by the first filter keying it and shared; this filter's own execution context."""
        fields = engine_fields(self.graph, self.gpu, trt.__version__)
        key = str(cache.path(fields))
        loaded = _engines.acquire(key, lambda: self._load(trt, fields, cache, on_status))
        self._shared_key, self._logger = key, loaded.logger
        context = loaded.engine.create_execution_context()
        if context is None:
            if loaded.logger.out_of_memory():
                raise BackendError(out_of_memory_message(self.graph, "while creating the TensorRT execution context"))
            raise BackendError(f"TensorRT could not create an execution context: {loaded.logger.reason()}")
        self._context = context

    def _load(self, trt, fields: dict[str, object], cache: EngineCache, on_status: StatusFn) -> _Loaded:
        """Deserialize the cached engine, building it first when there is none or TensorRT refuses it (sets built)."""
        graph, spec, logger = self.graph, self.graph.spec, _trt_logger(trt)

        def build() -> bytes:
            on_status(f"building TensorRT engine for {spec.width}x{spec.height} "
                      f"({'FP16' if spec.fp16 else 'FP32'}): about a minute, once; it is cached for next time")
            started = time.monotonic()
            payload = build_engine(graph, self.gpu, on_status=on_status, cache=cache, logger=logger)
            on_status(f"TensorRT engine built in {time.monotonic() - started:.0f} s")
            return payload

        runtime = _create(trt.Runtime, logger, "runtime")
        payload, self.built = cache.get_or_build(fields, build)
        logger.clear()
        engine = runtime.deserialize_cuda_engine(payload)
        if engine is None and logger.out_of_memory():
            # Not the file's fault: keep it for when the memory is there.
            raise BackendError(out_of_memory_message(graph, "while loading the TensorRT engine"))
        if engine is None and not self.built:
            # Intact file, same key, yet TensorRT refuses it (e.g. a driver update): rebuild once.
            log.warning("cached TensorRT engine %s could not be loaded (%s): rebuilding it",
                        cache.path(fields).name, logger.reason())
            cache.discard(fields)
            payload, self.built = cache.get_or_build(fields, build)
            logger.clear()
            engine = runtime.deserialize_cuda_engine(payload)
        if engine is None:
            if logger.out_of_memory():
                raise BackendError(out_of_memory_message(graph, "while loading the TensorRT engine"))
            raise BackendError(f"TensorRT could not load the engine: {logger.reason()}")
        self._check_io(trt, engine)
        return _Loaded(runtime, engine, logger)

    def _check_io(self, trt, engine) -> None:
        """The engine must have exactly the prepared graph's I/O: anything else means a wrong engine file."""
        expected = {**self.graph.inputs, **self.graph.outputs}
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        for name in names:
            shape = tuple(engine.get_tensor_shape(name))
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name)))
            is_input = engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT
            want = expected.get(name)
            if want is None or (shape, dtype) != (tuple(want[0]), np.dtype(want[1])) \
                    or is_input != (name in self.graph.inputs):
                raise BackendError(f"the TensorRT engine does not match the prepared graph ({name}: {dtype} {shape})")
        if set(names) != set(expected):
            raise BackendError(f"the TensorRT engine lacks {', '.join(sorted(set(expected) - set(names)))}")

    def _allocate(self) -> None:
        graph = self.graph
        for i, o in zip(STATE_INPUTS, STATE_OUTPUTS, strict=True):
            if graph.inputs[i] != graph.outputs[o]:
                raise BackendError(f"state {i} and {o} differ in shape: not an RVM graph")
        table = {**graph.inputs, **graph.outputs}
        streamed = [name for name in graph.inputs if name not in STATE_INPUTS] + [OUTPUT]
        self._io = io = DeviceIO(self._cuda, {name: table[name] for name in streamed},
                                 [graph.inputs[name] for name in STATE_INPUTS])
        self._extra_names = [name for name in graph.inputs if name not in STATE_INPUTS and name != FRAME]
        self._uploaded: dict[str, np.ndarray] = {}
        for name in graph.inputs:
            if not self._context.set_input_shape(name, tuple(graph.inputs[name][0])):
                raise BackendError(f"TensorRT rejected the shape of input {name}")
        for name in streamed:
            if not self._context.set_tensor_address(name, int(io.device[name])):
                raise BackendError(f"TensorRT rejected the address of {name}")
        io.zero_states()

    # -- the frame path ------------------------------------------------------------------------------------------

    def _check_extra(self, extra: Mapping[str, np.ndarray]) -> None:
        """Every extra input is checked before anything is queued, so a bad one leaves no copy in flight."""
        assert self._io is not None
        for name in self._extra_names:
            array = extra.get(name)
            if array is None:
                raise InputError(f"the prepared graph needs the '{name}' input (background source and graph differ)")
            host = self._io.host(name)
            if array.shape != host.shape or array.dtype != host.dtype:
                raise InputError(f"'{name}' must be {host.dtype} {host.shape}, got {array.dtype} {array.shape}")

    def run(self, frame: np.ndarray, extra: Mapping[str, np.ndarray]) -> np.ndarray:
        self.check_frame(frame)
        if self._context is None or self._io is None:
            raise BackendError("the TensorRT engine is closed")
        self._check_extra(extra)
        io, logger = self._io, self._logger
        oom = out_of_memory_message(self.graph, "while keying a frame")
        with cuda_errors(self._cuda, "while keying a frame", oom), self._ctx.current():
            io.mark(0)
            io.upload(FRAME, frame)
            for name in self._extra_names:
                array = extra[name]
                if array is not self._uploaded.get(name):  # sources hand over the same object until it changes
                    io.upload(name, array)
                    self._uploaded[name] = array
            io.mark(1)
            current, following = io.states()
            for name, buffer in zip(STATE_INPUTS, current, strict=True):
                self._context.set_tensor_address(name, int(buffer))
            for name, buffer in zip(STATE_OUTPUTS, following, strict=True):
                self._context.set_tensor_address(name, int(buffer))
            logger.clear()
            if not self._context.execute_async_v3(io.stream.handle):
                io.stream.synchronize()
                if logger.out_of_memory():
                    raise BackendError(oom)
                raise BackendError(f"TensorRT inference failed: {logger.reason()}")
            io.mark(2)
            out = io.download(OUTPUT)
            io.swap()
        return out

    def stage_ms(self) -> dict[str, float]:
        """GPU time of the last frame's stages, from CUDA events: upload, inference + composite, download."""
        if self._io is None:
            raise BackendError("the TensorRT engine is closed")
        with cuda_errors(self._cuda, "while reading the stage timings", "GPU out of memory"), self._ctx.current():
            return self._io.stage_ms()

    def reset(self) -> None:
        if self._io is None:
            return
        oom = out_of_memory_message(self.graph, "while resetting the recurrent state")
        with cuda_errors(self._cuda, "while resetting the recurrent state", oom), self._ctx.current():
            self._io.zero_states()

    def close(self) -> None:
        """Free everything while the context is current, then detach. The frame the last `run` returned lives in
        pinned memory freed here: callers copy what they keep (as Engine.run says)."""
        if self._context is None and self._io is None:
            return
        try:
            with cuda_errors(self._cuda, "while closing the TensorRT engine", "GPU out of memory"), \
                    self._ctx.current():
                self._free()
        finally:
            self._ctx.detach()

    def _free(self) -> None:
        """Release the buffers, then TensorRT's execution context, then this filter's hold on the shared engine (the
        last holder drops it), while the CUDA context is current."""
        io, self._io = self._io, None
        self._uploaded = {}
        try:
            if io is not None:
                io.free()
        finally:
            self._context = None
            key, self._shared_key = self._shared_key, None
            if key is not None:
                _engines.release(key, _Loaded.drop)
