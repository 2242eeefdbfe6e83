"""How the TensorRT engine handles what TensorRT and pycuda do when things go wrong, on any machine.

TensorRT and pycuda cannot run here, so `tensorrt` and `pycuda.driver` are small stand-ins (trt_standins.py) that
reproduce their documented behaviour; what is under test is obs-rvm's handling of it: fallback, messages, what is
kept on disk, what is freed and when. The same code against the real libraries is in test_tensorrt_gpu.py (GPU).
"""

from __future__ import annotations

import sys
import threading
import weakref

import numpy as np
import pytest

from obs_rvm.engines import tensorrt as trt_module
from obs_rvm.engines.gpu import GpuInfo
from obs_rvm.engines.trt_cache import EngineCache
from obs_rvm.errors import BackendError, InputError
from obs_rvm.graph import BACKGROUND, FRAME, GraphSpec, Variant, prepare
from obs_rvm.matting import MattingSession, SessionOptions
from obs_rvm.models import resolve_model

from clips import clip_frames
from trt_standins import GPU, graph_io, install, make_tensorrt

WIDTH, HEIGHT = 64, 48
CUDA_FAILURE = "CUDA initialization failure with error: 35. Please check your CUDA installation"
OOM_ERROR = ("[defaultAllocator.cpp::allocate::20] Error Code 2: OutOfMemory (no further information)")
OOM_WARNING = ("Requested amount of GPU memory (1073741824 bytes) could not be allocated. There may not be enough "
               "free memory for allocation to succeed.")


def graph(variant: Variant = Variant.REPLACE, feather: int = 0):
    return prepare(resolve_model(None), GraphSpec(WIDTH, HEIGHT, 0.5, variant, fp16=True, feather=feather))


def log_error(logger, message: str, level: str = "ERROR") -> None:
    import tensorrt as trt

    logger.log(getattr(trt.ILogger.Severity, level), message)


@pytest.fixture
def standins(monkeypatch):
    return install(monkeypatch)


@pytest.fixture
def engine_parts(standins, tmp_path):
    """The stand-ins set to report a correct engine for `graph()`, and an engine cache in tmp_path."""
    g = graph()
    standins.trt.behaviour.io = graph_io(g, standins.trt)
    standins.graph, standins.cache = g, EngineCache(tmp_path)
    return standins


def frame() -> np.ndarray:
    return np.zeros((HEIGHT, WIDTH, 4), np.uint8)


def background() -> dict[str, np.ndarray]:
    return {BACKGROUND: np.zeros((HEIGHT, WIDTH, 3), np.uint8)}


# 1. trt.Builder / trt.Runtime raising pybind11's TypeError when CUDA cannot start


def test_runtime_that_cannot_start_cuda_is_a_backend_error_with_tensorrts_reason(engine_parts):
    engine_parts.trt.behaviour.runtime = lambda logger: log_error(logger, CUDA_FAILURE)
    with pytest.raises(BackendError, match="TensorRT could not create its runtime: CUDA initialization failure"):
        trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)
    assert engine_parts.cuda.context.detached and engine_parts.cuda.current == []


def test_builder_that_cannot_start_cuda_is_a_backend_error_with_tensorrts_reason(engine_parts):
    engine_parts.trt.behaviour.builder = lambda logger: log_error(logger, CUDA_FAILURE)
    with pytest.raises(BackendError, match="TensorRT could not create its builder: CUDA initialization failure"):
        trt_module.build_engine(engine_parts.graph, GpuInfo("T4", (7, 5)), on_status=print,
                                cache=engine_parts.cache)


def test_session_falls_back_to_onnxruntime_and_says_why(engine_parts):
    engine_parts.trt.behaviour.runtime = lambda logger: log_error(logger, CUDA_FAILURE)
    session = MattingSession(SessionOptions())
    try:
        out = session.process(frame(), 0.0)
        assert out.shape == (HEIGHT, WIDTH, 4)
        assert session.status.backend.startswith("onnxruntime")
        assert any(note.startswith("tensorrt (GPU) failed: ") and CUDA_FAILURE in note
                   for note in session.status.notes), session.status.notes
    finally:
        session.close()


# 2. + 3. out of memory: TensorRT's wordings, and a good cache file kept


@pytest.mark.parametrize(("level", "message"), [("ERROR", OOM_ERROR), ("WARNING", OOM_WARNING),
                                                ("ERROR", "cudaMalloc: out of memory")])
def test_out_of_memory_is_recognised_in_tensorrts_wordings(engine_parts, level, message):
    def deserialize(logger, payload):
        log_error(logger, message, level)
        log_error(logger, "IRuntime::deserializeCudaEngine: Error Code 1: Myelin (engine deserialization failed)")

    engine_parts.trt.behaviour.deserialize = deserialize
    with pytest.raises(BackendError, match=r"^GPU out of memory while loading the TensorRT engine \(64x48"):
        trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)


def test_out_of_memory_on_a_cache_hit_keeps_the_cached_engine(engine_parts):
    g, cache, trt = engine_parts.graph, engine_parts.cache, engine_parts.trt
    fields = trt_module.engine_fields(g, GpuInfo("NVIDIA T4 (stand-in)", (7, 5)), trt.__version__)
    cache.store(fields, b"a good engine")
    built: list[bool] = []
    trt.behaviour.built = None  # a rebuild would fail: it must not be attempted

    def deserialize(logger, payload):
        built.append(payload != b"a good engine")
        log_error(logger, OOM_ERROR)

    trt.behaviour.deserialize = deserialize
    with pytest.raises(BackendError, match="GPU out of memory while loading the TensorRT engine.*close other"):
        trt_module.TensorRTEngine(g, cache=cache)
    assert built == [False], "loaded once from the cache, never rebuilt"
    assert cache.load(fields) == b"a good engine", "the cached engine is kept"


def test_build_out_of_memory_reported_as_warning_only(engine_parts):
    trt = engine_parts.trt
    trt.behaviour.built = None

    def fail(logger) -> None:
        log_error(logger, OOM_WARNING, "WARNING")

    original = trt.Builder.build_serialized_network

    def build(self, network, config):
        fail(self.logger)
        return original(self, network, config)

    trt.Builder.build_serialized_network = build
    with pytest.raises(BackendError, match="GPU out of memory while building the TensorRT engine"):
        trt_module.build_engine(engine_parts.graph, GpuInfo("T4", (7, 5)), on_status=print, cache=engine_parts.cache)


# 4. TensorRT 10.5+ supports compute capability 7.5 and newer only


@pytest.mark.parametrize("capability", [(6, 0), (6, 1), (7, 0), (7, 2)])
def test_gpus_older_than_turing_skip_tensorrt_with_the_reason(standins, monkeypatch, capability):
    old = GpuInfo("Tesla P100", capability)
    monkeypatch.setattr(trt_module, "find_gpu", lambda: (old, ""))
    gpu, reasons = trt_module.availability()
    assert gpu == old
    assert reasons == [f"Tesla P100, compute capability {capability[0]}.{capability[1]} is too old for TensorRT "
                       f"10.5+ (it needs compute capability 7.5 or newer: Turing, GeForce 16/RTX 20 and later)"]
    with pytest.raises(BackendError, match="too old for TensorRT 10.5"):
        trt_module.TensorRTEngine(graph())


def test_turing_runs_tensorrt(standins):
    assert trt_module.availability() == (GPU, [])


# 5. reset() wraps pycuda's errors


def test_reset_turns_pycuda_errors_into_backend_errors(engine_parts):
    engine = trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)
    engine_parts.cuda.fail["memset_d8_async"] = engine_parts.cuda.LogicError("cuMemsetD8Async failed: invalid "
                                                                            "device context")
    with pytest.raises(BackendError, match="CUDA error while resetting the recurrent state: cuMemsetD8Async"):
        engine.reset()
    assert engine_parts.cuda.current == [], "the context is popped"
    engine_parts.cuda.fail.clear()
    engine.close()


# 6. a bad extra input leaves no copy in flight


def test_bad_background_leaves_no_upload_in_flight(engine_parts):
    engine = trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)
    engine.run(frame(), background())
    (stream,) = engine_parts.cuda.streams
    with pytest.raises(InputError, match="'background' must be uint8 \\(48, 64, 3\\)"):
        engine.run(frame(), {BACKGROUND: np.zeros((10, 10, 3), np.uint8)})
    assert stream.pending == [], "nothing may still read the pinned frame buffer the next run writes"
    with pytest.raises(InputError, match="needs the 'background' input"):
        engine.run(frame(), {})
    assert stream.pending == []
    engine.close()


# 7. pinned buffers freed while the context is current


def test_close_frees_pinned_buffers_before_detaching(engine_parts):
    cuda = engine_parts.cuda
    engine = trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)
    engine.run(frame(), background())
    pinned = list(cuda.host_allocations)
    assert len(pinned) == 3  # frame, background, output
    engine.close()
    assert all(a.freed for a in pinned) and cuda.leaked == []
    assert cuda.context.detached and cuda.current == []
    with pytest.raises(BackendError, match="closed"):
        engine.run(frame(), background())
    engine.close()  # twice is harmless


# 8. one logger per loaded engine


def test_two_engines_never_report_each_others_errors(engine_parts):
    """Two filters keying different graphs (here: feathered and not; the same I/O) load two engines, each with its
    own logger: one camera's failure never carries the other's errors."""
    trt = engine_parts.trt
    first = trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)
    second = trt_module.TensorRTEngine(graph(feather=2), cache=engine_parts.cache)
    first_logger, second_logger = trt.created["loggers"]

    def execute(logger) -> bool:
        if logger is first_logger:
            # While the first filter's frame runs, the second camera's engine logs on its own thread.
            log_error(second_logger, "second camera: Error Code 1: Cuda Runtime (illegal memory access)")
            log_error(logger, "first camera: Error Code 3: API Usage Error (bad binding)")
            return False
        return True

    trt.behaviour.execute = execute
    with pytest.raises(BackendError) as error:
        first.run(frame(), background())
    assert "first camera" in str(error.value) and "second camera" not in str(error.value)
    second.run(frame(), background())
    first.close()
    second.close()


# 9. one engine per prepared graph, shared by the filters keying it; each filter's own context and state


def test_two_engines_on_one_graph_share_the_engine_and_keep_their_own_contexts(engine_parts):
    trt, cuda = engine_parts.trt, engine_parts.cuda
    first = trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)
    second = trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)
    try:
        assert len(trt.created["engines"]) == 1, "deserialized once"
        assert len(trt.created["contexts"]) == 2 and first._context is not second._context
        assert first.built and not second.built, "only the engine that built it says it was built"
        assert len(cuda.streams) == 2 and first._io is not second._io
        first_states, second_states = first._io.states(), second._io.states()
        first.run(frame(), background())
        assert first._io.states() == first_states[::-1], "the running engine swaps its own states"
        assert second._io.states() == second_states, "and leaves the other's alone"
        second.run(frame(), background())
        assert second._io.states() == second_states[::-1] and first._io.states() == first_states[::-1]
    finally:
        first.close()
        second.close()


def test_closing_one_engine_leaves_the_other_keying(engine_parts):
    trt, cuda = engine_parts.trt, engine_parts.cuda
    first = trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)
    mine = len(cuda.host_allocations)
    second = trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)
    first_pinned, second_pinned = cuda.host_allocations[:mine], cuda.host_allocations[mine:]
    first.run(frame(), background())
    first.close()
    assert all(a.freed for a in first_pinned) and cuda.leaked == [], "freed while the context is current"
    assert not any(a.freed for a in second_pinned), "the second engine's buffers are its own"
    assert trt.created["engines"][0]() is not None, "the shared engine stays while a filter uses it"
    assert second.run(frame(), background()).shape == (HEIGHT, WIDTH, 4)
    second.close()


def test_the_last_engine_to_close_releases_the_shared_engine_with_the_context_current(engine_parts):
    trt, cuda = engine_parts.trt, engine_parts.cuda
    first = trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)
    second = trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)
    second.run(frame(), background())
    released: list[bool] = []
    weakref.finalize(trt.created["engines"][0](), lambda: released.append(
        bool(cuda.current) and not cuda.current[-1].detached))
    first.close()
    assert released == []
    second.close()
    assert released == [True], "released by the last engine, while the CUDA context is current"
    assert all(context() is None for context in trt.created["contexts"])
    assert all(a.freed for a in cuda.host_allocations) and cuda.leaked == [] and cuda.current == []
    third = trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)
    assert len(trt.created["engines"]) == 2 and not third.built, "loaded afresh, from the cache"
    third.close()


def test_a_failed_load_is_not_shared(engine_parts):
    trt = engine_parts.trt
    trt.behaviour.deserialize = lambda logger, payload: log_error(logger, OOM_ERROR)
    with pytest.raises(BackendError, match="GPU out of memory while loading"):
        trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)
    trt.behaviour.deserialize = None
    engine = trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)
    assert len(trt.created["engines"]) == 1
    engine.close()


# 10. the GPU tests' frame source ends when there are no clips


def test_clip_frames_raises_when_no_clip_opens(tmp_path):
    outcome: list[BaseException | int] = []

    def take() -> None:
        try:
            outcome.append(len(list(clip_frames(3, WIDTH, HEIGHT, folder=tmp_path))))
        except RuntimeError as e:
            outcome.append(e)

    worker = threading.Thread(target=take, daemon=True)
    worker.start()
    worker.join(20)
    assert outcome, "clip_frames never returned"
    assert isinstance(outcome[0], RuntimeError) and "no frames from the clips" in str(outcome[0])


def test_clip_frames_gives_the_frames_asked_for():
    frames = list(clip_frames(5, WIDTH, HEIGHT))
    assert len(frames) == 5 and frames[0].shape == (HEIGHT, WIDTH, 4) and frames[0].dtype == np.uint8


# 11. a TensorRT without NetworkDefinitionCreationFlag.STRONGLY_TYPED


@pytest.mark.parametrize("strongly_typed", [True, False])
def test_build_works_with_and_without_the_strongly_typed_flag(engine_parts, monkeypatch, strongly_typed):
    trt = make_tensorrt(strongly_typed=strongly_typed)
    monkeypatch.setitem(sys.modules, "tensorrt", trt)
    payload = trt_module.build_engine(engine_parts.graph, GpuInfo("T4", (7, 5)), on_status=print,
                                      cache=engine_parts.cache)
    assert payload == b"engine bytes"
    assert trt.created["networks"] == [1 << 1 if strongly_typed else 0]


def test_frame_path_moves_the_frame_and_swaps_states(engine_parts):
    """Sanity of the stand-in itself against the engine: a run uploads the frame, downloads the output."""
    engine = trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)
    first = engine._io.states()
    engine.run(frame(), background())
    assert engine._io.states() == first[::-1]
    assert engine._io.host(FRAME).shape == (HEIGHT, WIDTH, 4)
    engine.close()


def test_out_of_device_memory_while_allocating_frees_what_was_allocated(engine_parts):
    cuda = engine_parts.cuda
    cuda.fail["mem_alloc"] = cuda.MemoryError("cuMemAlloc failed: out of memory")
    with pytest.raises(BackendError, match="^GPU out of memory while loading the TensorRT engine"):
        trt_module.TensorRTEngine(engine_parts.graph, cache=engine_parts.cache)
    assert cuda.host_allocations and all(a.freed for a in cuda.host_allocations) and cuda.leaked == []
    assert cuda.context.detached and cuda.current == []
