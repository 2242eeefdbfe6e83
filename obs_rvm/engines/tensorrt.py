"""TensorRT backend: the prepared graph (pre-processing, RVM, compositing) built into an engine and run with pycuda.

Written against TensorRT 10+ named-tensor API (set_input_shape, set_tensor_address, execute_async_v3) and strongly
typed networks, so TensorRT 10.x and 11.x build the same engine: precision comes from the graph (see fp16.py), not
from builder flags (TensorRT 11 removed BuilderFlag.FP16). pycuda provides device memory, pinned host buffers, the
stream and the events that time each stage.

Everything is allocated once per engine. Per frame only the RGBA frame goes up and the keyed frame comes down;
background inputs go up only when a different array object arrives; RVM's recurrent state never leaves the GPU: two
buffer sets swap roles each frame (this frame's r*o is the next frame's r*i).

tensorrt and pycuda are imported only when needed, so this module loads (and explains their absence) anywhere.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping

import numpy as np

from ..errors import BackendError, InputError
from ..graph import FRAME, GRAPH_VERSION, OUTPUT, STATE_INPUTS, STATE_OUTPUTS, PreparedGraph
from .base import Engine
from .gpu import GpuInfo, find_gpu
from .trt_cache import EngineCache

log = logging.getLogger("obs_rvm")

StatusFn = Callable[[str], None]
MIN_TENSORRT = 10
WORKSPACE_BYTES = 1 << 30
"""Scratch memory TensorRT may use while choosing kernels; RVM needs far less, and 1 GiB fits 4 GB cards."""
INSTALL_HINT = "pip install 'obs-rvm[gpu]'"
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


def _is_out_of_memory(messages: list[str]) -> bool:
    text = " ".join(messages).lower()
    return any(s in text for s in ("out of memory", "could not be allocated", "not enough free memory"))


_logger = None


def _trt_logger(trt):
    """One logger for the process (TensorRT ties a logger to each builder and runtime); it keeps the last errors
    so failures can say why."""
    global _logger
    if _logger is None:
        severity = trt.ILogger.Severity

        class Logger(trt.ILogger):
            def __init__(self) -> None:
                trt.ILogger.__init__(self)
                self.errors: list[str] = []

            def log(self, level, message) -> None:
                if level in (severity.INTERNAL_ERROR, severity.ERROR):
                    self.errors = [*self.errors[-9:], message]
                    log.warning("TensorRT: %s", message)  # the BackendError that follows is the error
                elif level == severity.WARNING:
                    log.info("TensorRT: %s", message)
                else:
                    log.debug("TensorRT: %s", message)

        _logger = Logger()
    return _logger


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


def build_engine(graph: PreparedGraph, gpu: GpuInfo, *, on_status: StatusFn, cache: EngineCache) -> bytes:
    """Build the serialized engine for a prepared graph (tens of seconds), reusing and updating the timing cache."""
    trt = _import_tensorrt()
    logger = _trt_logger(trt)
    logger.errors = []
    spec = graph.spec
    label = f"building TensorRT engine ({spec.width}x{spec.height}, {'FP16' if spec.fp16 else 'FP32'})"
    builder = trt.Builder(logger)
    # Strongly typed: the graph's own types decide precision. Accepted (and ignored, always on) by TensorRT 11.
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
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
        if _is_out_of_memory(logger.errors):
            raise BackendError(out_of_memory_message(graph, "while building the TensorRT engine"))
        raise BackendError(f"TensorRT engine build failed: {'; '.join(logger.errors) or 'no reason given'}")
    try:
        timing_store.store(timing_fields, bytes(config.get_timing_cache().serialize()))
    except OSError as e:
        log.info("cannot save TensorRT's timing cache (%s): the next build takes longer", e)
    return bytes(serialized)


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
        """True when this engine was built now rather than loaded from the cache."""
        trt, cuda = _import_tensorrt(), _import_pycuda()
        self._cuda = cuda
        self._logger = _trt_logger(trt)
        self._allocations: list = []
        self._context = self._engine = None
        try:
            cuda.init()
            # The device's primary context is the one TensorRT (CUDA runtime API) uses; pushing it around each call
            # lets any thread drive the engine.
            self._ctx = cuda.Device(0).retain_primary_context()
        except cuda.Error as e:
            raise BackendError(f"CUDA could not start on {gpu.name}: {e}") from e
        self._ctx.push()
        try:
            try:
                self._load(trt, cache or EngineCache(), on_status or (lambda message: None))
                self._allocate()
            except BaseException:
                self._free()
                raise
            finally:
                cuda.Context.pop()
        except cuda.MemoryError as e:
            self._ctx.detach()
            raise BackendError(out_of_memory_message(graph, "while loading the TensorRT engine")) from e
        except cuda.Error as e:
            self._ctx.detach()
            raise BackendError(f"CUDA error while loading the TensorRT engine: {e}") from e
        except BaseException:
            self._ctx.detach()
            raise

    # -- set-up ------------------------------------------------------------------------------------------------

    def _load(self, trt, cache: EngineCache, on_status: StatusFn) -> None:
        graph, spec, logger = self.graph, self.graph.spec, self._logger
        fields = engine_fields(graph, self.gpu, trt.__version__)

        def build() -> bytes:
            on_status(f"building TensorRT engine for {spec.width}x{spec.height} "
                      f"({'FP16' if spec.fp16 else 'FP32'}): about a minute, once; it is cached for next time")
            started = time.monotonic()
            payload = build_engine(graph, self.gpu, on_status=on_status, cache=cache)
            on_status(f"TensorRT engine built in {time.monotonic() - started:.0f} s")
            return payload

        runtime = trt.Runtime(logger)
        payload, self.built = cache.get_or_build(fields, build)
        logger.errors = []
        engine = runtime.deserialize_cuda_engine(payload)
        if engine is None and not self.built:
            # Intact file, same key, yet TensorRT refuses it (e.g. a driver update): rebuild once.
            log.warning("cached TensorRT engine %s could not be loaded (%s): rebuilding it",
                        cache.path(fields).name, "; ".join(logger.errors) or "no reason given")
            cache.discard(fields)
            payload, self.built = cache.get_or_build(fields, build)
            logger.errors = []
            engine = runtime.deserialize_cuda_engine(payload)
        if engine is None:
            raise BackendError(f"TensorRT could not load the engine: {'; '.join(logger.errors) or 'no reason given'}")
        self._engine = engine
        self._check_io(trt, engine)
        context = engine.create_execution_context()
        if context is None:
            if _is_out_of_memory(logger.errors):
                raise BackendError(out_of_memory_message(graph, "while creating the TensorRT execution context"))
            raise BackendError(f"TensorRT could not create an execution context: {'; '.join(logger.errors)}")
        self._context = context

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
        cuda, graph = self._cuda, self.graph
        for i, o in zip(STATE_INPUTS, STATE_OUTPUTS, strict=True):
            if graph.inputs[i] != graph.outputs[o]:
                raise BackendError(f"state {i} and {o} differ in shape: not an RVM graph")

        def nbytes(shape, dtype) -> int:
            return int(np.prod(shape)) * np.dtype(dtype).itemsize

        def device(size: int):
            allocation = cuda.mem_alloc(size)
            self._allocations.append(allocation)
            return allocation

        self._stream = cuda.Stream()
        self._events = [cuda.Event() for _ in range(4)]
        self._host: dict[str, np.ndarray] = {}
        self._device: dict[str, object] = {}
        streamed = [name for name in graph.inputs if name not in STATE_INPUTS] + [OUTPUT]
        table = {**graph.inputs, **graph.outputs}
        for name in streamed:
            shape, dtype = table[name]
            self._host[name] = cuda.pagelocked_empty(shape, dtype)
            self._device[name] = device(nbytes(shape, dtype))
        self._extra_names = [name for name in graph.inputs if name not in STATE_INPUTS and name != FRAME]
        self._uploaded: dict[str, np.ndarray] = {}
        self._state_bytes = [nbytes(*graph.inputs[name]) for name in STATE_INPUTS]
        self._states = [[device(size) for size in self._state_bytes] for _ in range(2)]
        self._turn = 0
        for name in graph.inputs:
            if not self._context.set_input_shape(name, tuple(graph.inputs[name][0])):
                raise BackendError(f"TensorRT rejected the shape of input {name}")
        for name in streamed:
            if not self._context.set_tensor_address(name, int(self._device[name])):
                raise BackendError(f"TensorRT rejected the address of {name}")
        self._zero_states()

    def _zero_states(self) -> None:
        for buffers in self._states:
            for buffer, size in zip(buffers, self._state_bytes, strict=True):
                self._cuda.memset_d8_async(buffer, 0, size, self._stream)
        self._stream.synchronize()

    # -- the frame path ------------------------------------------------------------------------------------------

    def run(self, frame: np.ndarray, extra: Mapping[str, np.ndarray]) -> np.ndarray:
        self.check_frame(frame)
        if self._context is None:
            raise BackendError("the TensorRT engine is closed")
        cuda, stream, events = self._cuda, self._stream, self._events
        self._ctx.push()
        try:
            np.copyto(self._host[FRAME], frame)
            events[0].record(stream)
            cuda.memcpy_htod_async(self._device[FRAME], self._host[FRAME], stream)
            for name in self._extra_names:
                self._upload_extra(name, extra.get(name))
            events[1].record(stream)
            current, following = self._states[self._turn], self._states[1 - self._turn]
            for name, buffer in zip(STATE_INPUTS, current, strict=True):
                self._context.set_tensor_address(name, int(buffer))
            for name, buffer in zip(STATE_OUTPUTS, following, strict=True):
                self._context.set_tensor_address(name, int(buffer))
            logger = self._logger
            logger.errors = []
            if not self._context.execute_async_v3(stream.handle):
                stream.synchronize()
                if _is_out_of_memory(logger.errors):
                    raise BackendError(out_of_memory_message(self.graph, "while keying a frame"))
                raise BackendError(f"TensorRT inference failed: {'; '.join(logger.errors) or 'no reason given'}")
            events[2].record(stream)
            cuda.memcpy_dtoh_async(self._host[OUTPUT], self._device[OUTPUT], stream)
            events[3].record(stream)
            stream.synchronize()
            self._turn = 1 - self._turn
        except cuda.MemoryError as e:
            raise BackendError(out_of_memory_message(self.graph, "while keying a frame")) from e
        except cuda.Error as e:
            raise BackendError(f"CUDA error while keying a frame: {e}") from e
        finally:
            cuda.Context.pop()
        return self._host[OUTPUT]

    def _upload_extra(self, name: str, array: np.ndarray | None) -> None:
        if array is None:
            raise InputError(f"the prepared graph needs the '{name}' input (background source and graph differ)")
        if array is self._uploaded.get(name):
            return  # background sources hand over the same object until something changes
        host = self._host[name]
        if array.shape != host.shape or array.dtype != host.dtype:
            raise InputError(f"'{name}' must be {host.dtype} {host.shape}, got {array.dtype} {array.shape}")
        np.copyto(host, array)
        self._cuda.memcpy_htod_async(self._device[name], host, self._stream)
        self._uploaded[name] = array

    def stage_ms(self) -> dict[str, float]:
        """GPU time of the last frame's stages, from CUDA events: upload, inference + composite, download."""
        events = self._events
        self._ctx.push()
        try:
            return {"upload": events[0].time_till(events[1]), "infer": events[1].time_till(events[2]),
                    "download": events[2].time_till(events[3])}
        finally:
            self._cuda.Context.pop()

    def reset(self) -> None:
        if self._context is None:
            return
        self._ctx.push()
        try:
            self._zero_states()
        finally:
            self._cuda.Context.pop()

    def close(self) -> None:
        if self._context is None:
            return
        self._ctx.push()
        try:
            self._free()
        finally:
            self._cuda.Context.pop()
            self._ctx.detach()

    def _free(self) -> None:
        """Release device memory, CUDA objects and TensorRT objects while the context is current. The caller may
        still hold the last output frame: its pinned buffer is freed when that reference goes."""
        for allocation in self._allocations:
            allocation.free()
        self._allocations = []
        self._context = self._engine = None
        self._uploaded = {}
        self._host = {}
        self._stream = None
        self._events = []
