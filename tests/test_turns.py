"""Several filters in one process: inference in fair turns, one session per graph, never a shared recurrent state."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from obs_rvm.backgrounds import BackgroundConfig
from obs_rvm.matting import MattingSession, SessionOptions
from obs_rvm.turns import INFERENCE, MAX_PAUSE_S, PAUSE_EASE, PAUSE_STEP_S, Turns

from reference import clip_frames

SIZE = (160, 120)


def test_turns_are_fair_and_one_at_a_time():
    """Three users hammering the turns for a second: never two inside at once, and equal shares (within 20%)."""
    turns = Turns()
    inside, most_inside, served = [0], [0], [0, 0, 0]
    lock = threading.Lock()
    end = time.monotonic() + 1.0

    def user(i: int) -> None:
        me = object()
        while time.monotonic() < end:
            with turns.turn(me):
                with lock:
                    inside[0] += 1
                    most_inside[0] = max(most_inside[0], inside[0])
                time.sleep(0.002)  # an inference: releases the GIL, as onnxruntime does
                with lock:
                    inside[0] -= 1
                served[i] += 1

    threads = [threading.Thread(target=user, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most_inside[0] == 1
    assert turns.taken == sum(served) and min(served) >= 0.8 * max(served), served
    assert turns.sharing() == 3


def test_a_lone_user_never_waits():
    turns = Turns()
    start = time.perf_counter()
    for _ in range(1000):
        with turns.turn(turns):
            pass
    assert time.perf_counter() - start < 1.0 and turns.sharing() == 1
    turns.forget(turns)
    assert turns.sharing() == 0


def key_alone(frames: list[np.ndarray], mode: str) -> list[np.ndarray]:
    session = MattingSession(SessionOptions(background=BackgroundConfig(mode=mode), backend="cpu", threads=1))
    try:
        return [session.process(f, i / 30).copy() for i, f in enumerate(frames)]
    finally:
        session.close()


def test_two_filters_keying_at_once_share_the_session_but_never_the_state():
    """A person clip and a plain wall keyed by two sessions in two threads at the same time, through the turns:
    each output equals that source keyed alone, frame for frame (a shared recurrent state would carry the
    person into the wall's matte), and the two engines run one onnxruntime session."""
    person = [cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA) for f in clip_frames("again.mkv", 8)]
    wall = [np.dstack([np.full((SIZE[1], SIZE[0], 3), (150, 140, 120), np.uint8),
                       np.full((SIZE[1], SIZE[0]), 255, np.uint8)])] * len(person)
    expected = {"person": key_alone(person, "transparent"), "wall": key_alone(wall, "transparent")}
    assert expected["person"][-1][..., 3].mean() > 40, "the person is keyed"
    assert expected["wall"][-1][..., 3].mean() < 10, "the wall is background"

    sessions = {name: MattingSession(SessionOptions(background=BackgroundConfig(mode="transparent"),
                                                    backend="cpu", threads=1)) for name in expected}
    outputs: dict[str, list[np.ndarray]] = {name: [] for name in expected}
    start = threading.Barrier(2)
    taken = INFERENCE.taken

    def run(name: str, frames: list[np.ndarray]) -> None:
        start.wait()
        for i, frame in enumerate(frames):
            outputs[name].append(sessions[name].process(frame, i / 30).copy())

    threads = [threading.Thread(target=run, args=args) for args in (("person", person), ("wall", wall))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    shared = sessions["person"].engine.session
    try:
        assert shared is sessions["wall"].engine.session, "one session per graph"
        assert INFERENCE.taken - taken >= 2 * len(person)
        for name in expected:
            for got, want in zip(outputs[name], expected[name], strict=True):
                np.testing.assert_array_equal(got, want, err_msg=f"{name}: not what it keys alone")
    finally:
        for session in sessions.values():
            session.close()
    engine = MattingSession(SessionOptions(backend="cpu", threads=1))
    try:
        engine.process(person[0], 0.0)
        assert engine.engine.session is not shared, "a shared session goes with its last user"
    finally:
        engine.close()


def test_frames_the_host_rendered_late_pause_keying_and_calm_seconds_resume_it():
    turns = Turns()
    turns.observe_lag(5, now=100.0)  # the first reading is the baseline: frames OBS lagged before we looked
    assert turns.pause_s == 0.0
    turns.observe_lag(7, now=100.1)
    assert turns.pause_s == pytest.approx(2 * PAUSE_STEP_S)
    turns.observe_lag(7000, now=100.2)
    assert turns.pause_s == MAX_PAUSE_S, "bounded: the matte keeps moving"
    turns.observe_lag(7000, now=100.9)
    assert turns.pause_s == MAX_PAUSE_S, "less than a calm second"
    turns.observe_lag(7000, now=101.3)
    assert turns.pause_s == pytest.approx(MAX_PAUSE_S * PAUSE_EASE)

    turns.pause_s = 0.05
    order = []

    def user(name: str) -> None:
        with turns.turn(name):
            order.append((name, time.perf_counter()))

    first = threading.Thread(target=user, args=("a",))
    first.start()
    while not order:
        time.sleep(0.001)
    second = threading.Thread(target=user, args=("b",))
    second.start()
    first.join()
    second.join()
    assert [name for name, _ in order] == ["a", "b"]
    assert order[1][1] - order[0][1] >= 0.05, "no one keys during the pause that ends a turn"
