"""TensorRT on a real NVIDIA GPU against onnxruntime on the CPU, same prepared graphs, same real frames.

Skipped where TensorRT cannot run (no tensorrt/pycuda, no NVIDIA driver or device): CI has none of them, so these
tests have not run there. Engines are built into the test cache once (tens of seconds each) and reused.
"""

from __future__ import annotations

import re
import threading
from collections import Counter
from collections.abc import Iterator

import numpy as np
import pytest

from obs_rvm.backgrounds import Blur, Color
from obs_rvm.engines.onnxruntime import OnnxRuntimeEngine
from obs_rvm.engines.tensorrt import TensorRTEngine, availability
from obs_rvm.engines.trt_cache import EngineCache
from obs_rvm.graph import BACKGROUND, OUTPUT, GraphSpec, PreparedGraph, Variant, prepare
from obs_rvm.matting import MattingSession, SessionOptions
from obs_rvm.models import resolve_model

import clips

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(bool(availability()[1]),
                                                  reason="TensorRT cannot run here: " + "; ".join(availability()[1]))]

WIDTH, HEIGHT, RATIO = 640, 480, 0.375


def clip_frames(count: int) -> Iterator[np.ndarray]:
    return clips.clip_frames(count, WIDTH, HEIGHT)


def graph_for(variant: Variant, fp16: bool) -> PreparedGraph:
    return prepare(resolve_model(None), GraphSpec(WIDTH, HEIGHT, RATIO, variant, fp16=fp16))


def extra_for(variant: Variant) -> dict[str, np.ndarray]:
    if variant is Variant.REPLACE:
        return Color((0, 177, 64)).inputs(HEIGHT, WIDTH, 0.0)
    if variant is Variant.BLUR:
        return Blur(50).inputs(HEIGHT, WIDTH, 0.0)
    return {}


def differences(variant: Variant, fp16: bool, count: int = 100) -> np.ndarray:
    """|TensorRT - onnxruntime| per frame over `count` frames, recurrent state carried by each engine."""
    trt = TensorRTEngine(graph_for(variant, fp16))
    cpu = OnnxRuntimeEngine(graph_for(variant, False))
    extra = extra_for(variant)
    diffs = []
    try:
        for frame in clip_frames(count):
            got = trt.run(frame, extra).astype(np.int16)
            want = cpu.run(frame, extra).astype(np.int16)
            diffs.append(np.abs(got - want))
    finally:
        trt.close()
    assert len(diffs) == count
    return np.stack(diffs)


@pytest.mark.parametrize("variant", list(Variant))
def test_fp32_engine_matches_onnxruntime_over_100_frames(variant):
    diffs = differences(variant, fp16=False)
    assert diffs.max() <= 1, f"worst frame {int(diffs.reshape(len(diffs), -1).max(axis=1).argmax())}"


def test_fp16_engine_is_close_to_onnxruntime():
    shown = differences(Variant.REPLACE, fp16=True)  # over a colour: what the viewer sees
    assert shown.mean() <= 1 and shown.max() <= 8
    raw = differences(Variant.TRANSPARENT, fp16=True)  # raw RGBA, fgr under alpha 0 included
    assert raw.mean() <= 1 and (raw > 8).mean() <= 1e-5


def test_state_is_carried_on_the_gpu_and_reset_clears_it():
    graph = graph_for(Variant.TRANSPARENT, False)
    trt, cpu = TensorRTEngine(graph), OnnxRuntimeEngine(graph)
    try:
        frames = list(clip_frames(21))
        for frame in frames[:20]:
            trt.run(frame, {})
        carried = trt.run(frames[20], {}).copy()
        trt.reset()
        fresh = trt.run(frames[20], {}).copy()
        assert np.abs(fresh.astype(np.int16) - cpu.run(frames[20], {})).max() <= 1
        assert np.abs(carried.astype(np.int16) - fresh).max() > 1, "20 frames of history must change the result"
    finally:
        trt.close()


def test_engine_cache_hit_on_second_run_and_corrupt_file_rebuilt(tmp_path):
    graph = graph_for(Variant.TRANSPARENT, True)
    cache = EngineCache(tmp_path)
    frame = next(clip_frames(1))
    first_messages: list[str] = []
    engine = TensorRTEngine(graph, on_status=first_messages.append, cache=cache)
    assert engine.built and any(m.startswith("building TensorRT engine for 640x480") for m in first_messages)
    first = engine.run(frame, {}).copy()
    engine.close()
    assert list(tmp_path.glob("*.timing")), "TensorRT's timing cache is kept too"

    second_messages: list[str] = []
    engine = TensorRTEngine(graph, on_status=second_messages.append, cache=cache)
    assert not engine.built and second_messages == []
    assert np.array_equal(engine.run(frame, {}), first)
    engine.close()

    (path,) = tmp_path.glob("*.engine")
    path.write_bytes(path.read_bytes()[:1000])
    engine = TensorRTEngine(graph, cache=cache)
    assert engine.built
    engine.close()


def test_background_is_uploaded_only_when_a_new_array_arrives():
    engine = TensorRTEngine(graph_for(Variant.REPLACE, False))
    try:
        frame = next(clip_frames(1))
        background = np.zeros((HEIGHT, WIDTH, 3), np.uint8)
        background[:] = (0, 177, 64)
        green = engine.run(frame, {BACKGROUND: background}).copy()
        engine.reset()
        background[:] = (255, 0, 0)  # same object, changed in place: by contract not uploaded again
        assert np.array_equal(engine.run(frame, {BACKGROUND: background}), green)
        engine.reset()
        red = engine.run(frame, {BACKGROUND: background.copy()})  # a new object is uploaded
        assert not np.array_equal(red, green)
    finally:
        engine.close()


ALLOCATORS = re.compile(r"^(mem_alloc|mem_host_alloc|mem_managed_alloc|pagelocked_|aligned_|managed_|to_device$|"
                        r"register_host_memory$)")
"""pycuda's functions that allocate device, pinned, aligned or managed memory."""


def counting_allocations(cuda, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every call of pycuda's allocators from now on, by name: the allocations this process makes through pycuda,
    which other processes on a shared GPU do not change (as they change the GPU's free memory)."""
    calls: list[str] = []

    def counted(name: str, allocate):
        def allocating(*args, **kwargs):
            calls.append(name)
            return allocate(*args, **kwargs)
        return allocating

    names = [name for name in dir(cuda) if ALLOCATORS.match(name) and callable(getattr(cuda, name))]
    assert {"mem_alloc", "pagelocked_empty"} <= set(names), names
    for name in names:
        monkeypatch.setattr(cuda, name, counted(name, getattr(cuda, name)))
    return calls


def test_runs_from_another_thread_and_allocates_nothing_per_frame(monkeypatch):
    """The engine allocates its buffers once, when it is made: 60 frames keyed from another thread allocate
    nothing (engine.py and device_io.py reach pycuda through the module, so the count sees every call)."""
    import pycuda.driver as cuda

    engine = TensorRTEngine(graph_for(Variant.BLUR, True))
    extra = extra_for(Variant.BLUR)
    frames = list(clip_frames(60))
    keyed: list[tuple[int, ...]] = []
    calls = counting_allocations(cuda, monkeypatch)

    def work() -> None:
        for frame in frames:
            keyed.append(engine.run(frame, extra).shape)

    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
    monkeypatch.undo()
    engine.close()
    assert keyed == [tuple(engine.graph.outputs[OUTPUT][0])] * len(frames), "every frame keyed"
    assert calls == [], f"allocated per frame: {Counter(calls)}"


def test_session_auto_picks_tensorrt_with_the_gpu_ratio():
    session = MattingSession(SessionOptions())
    frame = np.zeros((1080, 1920, 4), np.uint8)
    out = session.process(frame, 0.0)
    assert out.shape == (1080, 1920, 4)
    assert session.status.backend.startswith("tensorrt on CUDA")
    assert session.status.downsample_ratio == 0.25
    session.close()


def test_bench_measures_every_gpu_stage():
    from obs_rvm.bench import gpu_stages

    result = gpu_stages(SessionOptions(backend="tensorrt"), 640, 480, 5)
    assert result.upload_ms > 0 and result.infer_ms > 0 and result.download_ms > 0
    assert result.wall_ms >= result.gpu_ms * 0.5
    assert "inference+composite" in result.line()
