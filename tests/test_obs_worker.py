"""The OBS filter's inference thread and settings, on the real model, without OBS: frames in, keyed frames out,
newest-wins hand-off, live settings changes, errors reported once and recovered from, clean stop."""

from __future__ import annotations

import logging
import time
from dataclasses import replace

import cv2
import numpy as np
import pytest
from obs_harness import filter_settings as settings

from obs_rvm.backgrounds import DEFAULT_COLOR
from obs_rvm.matting import MattingSession
from obs_rvm.obs import settings as keys
from obs_rvm.obs.locale import Text
from obs_rvm.obs.stats import Rate, Rolling
from obs_rvm.obs.status import ERROR, NORMAL, WARNING, Numbers, describe, stats_line
from obs_rvm.obs.worker import GAP_NS, Captured, FilterWorker, WorkerStatus

from reference import clip_frames

FRAME_NS = 33_333_333
SIZE = (320, 240)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA) for f in clip_frames("again.mkv", 6)]


@pytest.fixture
def worker_factory():
    workers: list[FilterWorker] = []

    def make(**values) -> FilterWorker:
        w = FilterWorker("test", settings(**values))
        workers.append(w)
        return w

    yield make
    for w in workers:
        w.stop()
        assert w.join(30), "worker thread did not exit"


def wait(probe, timeout: float = 60.0, what: str = "condition", fail: bool = True):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = probe()
        if value is not None and value is not False:
            return value
        time.sleep(0.01)
    if fail:
        raise AssertionError(f"timed out waiting for {what}")
    return None


def key_one(worker: FilterWorker, frame: np.ndarray, frame_time: int, resubmit: float | None = None,
            shown_since: int = 0):
    """Hand over a frame and wait for its keyed result. With `resubmit` (s), hand it over again now and then: a
    settings change applied just after it was keyed discards that result, as it must (OBS sends the next frame)."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        worker.submit(Captured(frame, frame_time, shown_since))
        keyed = wait(worker.latest, timeout=resubmit or 60, what="a keyed frame", fail=False)
        if keyed is not None:
            return keyed
    raise AssertionError("timed out waiting for a keyed frame")


def test_settings_keys_defaults_and_colours():
    assert set(keys.defaults()) == {"background", "color", "image_path", "video_path", "blur", "model", "backend",
                                    "downsample_ratio", "fp16", "matte_grow", "feather", "sync", "matte_refresh",
                                    "skip_still"}
    s = settings()
    assert s.background.mode == "blur" and s.background.color == DEFAULT_COLOR and s.backend == "auto"
    assert s.downsample_ratio == 0 and s.session_options().downsample_ratio is None and s.fp16
    assert keys.rgb_to_obs_color((1, 2, 3)) == 0xFF030201  # OBS stores 0xAABBGGRR
    assert keys.obs_color_to_rgb(0xFF030201) == (1, 2, 3)
    assert settings(background="color", color=0xFF0000FF).background.color == (255, 0, 0)
    assert settings(blur=50).engine_key == settings(blur=10).engine_key
    assert settings(downsample_ratio=0.5).engine_key != settings().engine_key
    assert settings(matte_grow=-2).engine_key != settings().engine_key != settings(feather=3).engine_key
    assert settings(sync="live").engine_key != settings().engine_key
    assert settings(matte_refresh=3).engine_key == settings(skip_still=True).engine_key == settings().engine_key
    assert [settings(sync=m).session_options().layers for m in ("auto", "sync", "live")] == [None, False, True]
    edged = settings(matte_grow=-2, feather=3).session_options()
    assert (edged.matte_grow, edged.feather) == (-2, 3)


def test_keys_frames_exactly_like_a_session(worker_factory, frames):
    values = {"background": "color", "color": keys.rgb_to_obs_color((10, 20, 250))}
    worker = worker_factory(**values)
    session = MattingSession(settings(**values).session_options())  # same options, same thread count
    for i, frame in enumerate(frames):
        keyed = key_one(worker, frame, i * FRAME_NS)
        expected = session.process(frame, i * FRAME_NS / 1e9)
        assert keyed.frame_time == i * FRAME_NS
        assert np.abs(keyed.frame.astype(int) - expected).max() <= 1
    session.close()
    status = worker.snapshot()
    assert status.state == "running" and worker.running and status.frames == len(frames)
    assert status.backend.startswith("onnxruntime") and status.size == SIZE
    assert status.message == f"preparing the model for {SIZE[0]}x{SIZE[1]}"  # MattingSession's on_status reached us


def test_newest_frame_wins_and_nothing_queues(worker_factory, frames):
    worker = worker_factory(background="transparent")
    key_one(worker, frames[0], 0)  # engine built: from here on only inference time counts
    for i in range(1, 41):
        worker.submit(Captured(frames[i % len(frames)], i * FRAME_NS))
    last = None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and (last is None or last.frame_time != 40 * FRAME_NS):
        last = worker.latest() or last
        time.sleep(0.005)
    assert last is not None and last.frame_time == 40 * FRAME_NS, "the newest frame was not keyed"
    assert worker.snapshot().frames < 20 and worker.dropped > 20  # older frames were dropped, not queued


def test_background_changes_live_engine_changes_rebuild(worker_factory, frames):
    worker = worker_factory(background="color", color=keys.rgb_to_obs_color((255, 0, 0)))
    t = 0

    def corner_after(new: keys.FilterSettings) -> np.ndarray:
        nonlocal t
        worker.configure(new)
        for _ in range(50):
            t += FRAME_NS
            keyed = key_one(worker, frames[0], t, resubmit=1.0)
            if not np.array_equal(keyed.frame[0, 0, :3], previous):
                return keyed.frame[0, 0, :3]
        raise AssertionError("settings change never reached the output")

    previous = key_one(worker, frames[0], t).frame[0, 0, :3].copy()
    assert previous.tolist() == [255, 0, 0]
    message_time = worker.snapshot().message_time
    previous = corner_after(settings(background="color", color=keys.rgb_to_obs_color((0, 255, 0))))
    assert previous.tolist() == [0, 255, 0]
    assert worker.snapshot().message_time == message_time, "a colour change must not rebuild anything"
    assert worker.snapshot().downsample_ratio == 1.0  # auto at 320x240 on the CPU
    worker.configure(settings(background="color", color=keys.rgb_to_obs_color((0, 255, 0)), downsample_ratio=0.5))
    wait(lambda: key_one(worker, frames[0], t + FRAME_NS, resubmit=1.0) and worker.snapshot().downsample_ratio == 0.5,
         what="the rebuilt session")
    assert worker.snapshot().message_time > message_time


def test_errors_are_logged_once_shown_and_recovered_from(worker_factory, frames, caplog, tmp_path):
    caplog.set_level(logging.INFO, logger="obs_rvm")
    missing = tmp_path / "nope.onnx"
    worker = worker_factory(model=str(missing))
    wait(lambda: worker.snapshot().state == "error", what="the error state")
    for i in range(10):
        worker.submit(Captured(frames[0], i * FRAME_NS))
        time.sleep(0.02)
    status = worker.snapshot()
    assert not worker.running and worker.latest() is None
    assert status.error.startswith(f"model file not found: {missing}")
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and str(missing) in errors[0].getMessage()

    text, level = describe(Text(), status, Numbers())
    assert level == ERROR and status.error in text and "passes through" in text

    worker.configure(settings(background="image"))
    wait(lambda: "choose one in the filter's properties" in worker.snapshot().error, what="the no-file error")
    worker.configure(settings(background="image", image_path=str(tmp_path / "missing.png")))
    wait(lambda: "image not found" in worker.snapshot().error, what="the image error")
    picture = tmp_path / "bg.png"
    cv2.imwrite(str(picture), np.full((50, 80, 3), (0, 0, 255), np.uint8))  # BGR red
    worker.configure(settings(background="image", image_path=str(picture)))
    keyed = key_one(worker, frames[0], 0)
    assert worker.running and worker.snapshot().error == ""
    assert keyed.frame[0, 0, :3].tolist() == [255, 0, 0]


def test_a_pause_in_drawing_forgets_the_recurrent_state(worker_factory, frames):
    """The filter was not drawn for a while (a new shown_since): the next frame keys like a first frame."""
    worker = worker_factory(background="transparent")
    for i in range(4):
        key_one(worker, frames[i], i * FRAME_NS)
    resumed = 3 * FRAME_NS + GAP_NS + 1
    after_gap = key_one(worker, frames[4], resumed, shown_since=resumed).frame
    fresh = MattingSession(settings(background="transparent").session_options())
    first = fresh.process(frames[4], 0.0)
    assert np.abs(after_gap.astype(int) - first).max() <= 1  # like a first frame: no state carried over
    assert worker.snapshot().resets == 1
    fresh.close()


def test_slow_keying_keeps_the_recurrent_state(worker_factory, frames):
    """Keyed frames far apart while the filter is drawn all along (a slow CPU, cameras taking turns) carry RVM's
    state from one to the next, exactly as the pipeline keys them in a row: resetting would make the matte flicker."""
    worker = worker_factory(background="transparent")
    session = MattingSession(settings(background="transparent").session_options())
    apart = 2 * GAP_NS  # a matte a second: "skip while still", or three cameras taking turns on a slow CPU
    for i, frame in enumerate(frames):
        keyed = key_one(worker, frame, i * apart)
        expected = session.process(frame, i * apart / 1e9)
        assert np.abs(keyed.frame.astype(int) - expected).max() <= 1, f"frame {i} was keyed from a forgotten state"
    session.close()
    assert worker.snapshot().resets == 0


def test_stop_with_inference_in_flight(frames):
    worker = FilterWorker("stop", settings(background="blur"))
    key_one(worker, frames[0], 0)
    worker.submit(Captured(frames[1], FRAME_NS))
    time.sleep(0.01)
    worker.stop()
    assert worker.join(30)
    assert worker.snapshot().state == "stopped" and not worker.alive


def test_rolling_percentiles_and_rates():
    r = Rolling(5)
    assert r.median() is None
    for v in (9, 1, 7, 3, 5, 100):  # the first value falls out of the window
        r.add(v)
    assert (r.median(), r.percentile(99), r.percentile(0), len(r)) == (5, 100, 1, 5)
    rate = Rate(window=2.0)
    for i in range(21):
        rate.tick(10 + i * 0.1)  # 10 per second
    assert rate.per_second(12.0) == pytest.approx(10.0) and rate.per_second(20.0) == 0.0 and rate.count == 21
    slow = Rate(window=2.0)
    for i in range(6):
        slow.tick(i * 1.2)  # keyed once per 1.2 s (a still picture): never reads 0 between two events
    assert all(slow.per_second(6.0 + d) == pytest.approx(1 / 1.2) for d in (0.0, 0.5, 1.0, 1.9))


def test_status_text_names_what_runs():
    status = WorkerStatus(state="running", backend="onnxruntime on CPU (1 thread)", model="m.onnx", size=(640, 480),
                          downsample_ratio=0.5, notes=["onnxruntime has no CUDA provider"], message="preparing")
    text, level = describe(Text(), status, Numbers(inference_fps=7.5, inference_ms=130, shown_fps=7.4,
                                                   latency_ms=233.4, render_median_ms=0.41, render_p99_ms=1.2,
                                                   dropped=3))
    for part in ("onnxruntime on CPU (1 thread)", "m.onnx", "640x480", "0.5", "7.5 fps", "233 ms", "Sync Offset",
                 "0.41 ms", "1.20 ms", "no CUDA provider"):
        assert part in text
    assert level == NORMAL, "a backend that is simply not available here is no warning"
    assert "preparing" not in text, "the last step before keying is stale once keying runs"
    fell_back = replace(status, notes=["tensorrt (GPU) failed: out of memory"])
    assert describe(Text(), fell_back, Numbers())[1] == WARNING


def test_status_says_when_keying_gives_way_to_obs():
    """The pacing's pause (turns.py) in the Status and the stats line, once it is long enough to matter."""
    status = WorkerStatus(state="running", backend="onnxruntime on CPU (1 thread)", model="m.onnx", size=(1280, 720),
                          downsample_ratio=0.25)
    text, level = describe(Text(), status, Numbers(pause_ms=120.4))
    assert "Giving way: OBS rendered frames late, so keying pauses after each frame for 120 ms" in text
    assert level == NORMAL
    assert "Giving way" not in describe(Text(), status, Numbers(pause_ms=3.0))[0], "a fading hiccup is not news"
    assert stats_line(status, Numbers(pause_ms=120.4)).endswith(" pause_ms=120 resets=0")


def test_stop_during_a_model_preparation_cancels_it_quietly(frames, tmp_path, monkeypatch, caplog):
    """OBS's exit waits for a stopped worker: one preparing a model must end at once, and say nothing alarming."""
    monkeypatch.setenv("OBS_RVM_CACHE_DIR", str(tmp_path / "cache"))  # nothing cached: the preparation runs
    graphs = tmp_path / "cache" / "graphs"
    worker = FilterWorker("prep", settings(background="blur"))
    # A 4K graph takes seconds to build (3.3 s here, 0.8 s at 160x120): a stall of this thread between seeing the
    # preparation start and stopping it cannot outlast the build, so the stop reaches a preparation in flight.
    worker.submit(Captured(cv2.resize(frames[0], (3840, 2160)), 0))
    wait(lambda: "preparing the model" in worker.snapshot().message, 30, "the preparation to start")
    assert not list(graphs.glob("*")), "the preparation is still in flight when it is stopped"
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="obs_rvm"):
        worker.stop()
        assert worker.join(30)
    assert worker.snapshot().state == "stopped" and worker.snapshot().frames == 0
    assert not list(graphs.glob("*")), "the preparation was cancelled, not finished"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
