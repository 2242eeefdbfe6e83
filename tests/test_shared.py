"""The registry of objects shared by key (obs_rvm/engines/shared.py): opened once, never poisoned, never in the way.

Threads meet through Events; the only timeouts are there so a broken registry fails a test instead of hanging it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import pytest

from obs_rvm.engines.shared import SharedObjects

HANG = 10.0
"""Seconds after which a thread that should long have finished counts as stuck (a failure, never a measurement)."""


def until(condition: Callable[[], bool]) -> bool:
    """Wait for `condition` (another thread's progress that no event announces); False if it never came."""
    pause = threading.Event()
    for _ in range(int(HANG / 0.005)):
        if condition():
            return True
        pause.wait(0.005)
    return condition()


def start(target: Callable[[], None]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_users_of_one_key_open_it_once_and_share_it():
    registry: SharedObjects[str, object] = SharedObjects()
    gate = threading.Event()
    opened: list[object] = []
    got: list[object] = []

    def open_value() -> object:
        gate.wait(HANG)  # still opening while the others arrive
        opened.append(object())
        return opened[-1]

    threads = [start(lambda: got.append(registry.acquire("graph", open_value))) for _ in range(4)]
    try:
        assert until(lambda: registry.users("graph") == 4), "all four hold or await the one entry"
    finally:
        gate.set()
    for thread in threads:
        thread.join(HANG)
    assert len(opened) == 1 and got == opened * 4
    assert registry.users("graph") == 4


def test_a_failed_open_reaches_its_caller_and_the_next_acquire_opens_afresh():
    registry: SharedObjects[str, str] = SharedObjects()

    def fail() -> str:
        raise MemoryError("out of memory")

    with pytest.raises(MemoryError, match="out of memory"):
        registry.acquire("graph", fail)
    assert registry.users("graph") == 0, "nothing left behind"
    assert registry.acquire("graph", lambda: "session") == "session"
    assert registry.users("graph") == 1


def test_a_user_waiting_on_a_failed_open_opens_it_itself():
    registry: SharedObjects[str, str] = SharedObjects()
    gate = threading.Event()
    outcome: dict[str, object] = {}

    def fail() -> str:
        gate.wait(HANG)
        raise RuntimeError("TensorRT could not load the engine")

    def first() -> None:
        try:
            registry.acquire("graph", fail)
        except RuntimeError as e:
            outcome["first"] = e

    def second() -> None:
        outcome["second"] = registry.acquire("graph", lambda: "engine")

    threads = [start(first)]
    assert until(lambda: registry.users("graph") == 1)
    threads.append(start(second))
    try:
        assert until(lambda: registry.users("graph") == 2), "the second waits for the first's open"
    finally:
        gate.set()
    for thread in threads:
        thread.join(HANG)
    assert isinstance(outcome["first"], RuntimeError), "the error goes to the user that opened"
    assert outcome["second"] == "engine" and registry.users("graph") == 1


def test_a_slow_open_of_one_key_does_not_hold_up_another():
    registry: SharedObjects[str, str] = SharedObjects()
    gate = threading.Event()
    other = threading.Event()
    got: list[str] = []

    slow = start(lambda: got.append(registry.acquire("720p", lambda: gate.wait(HANG) and "720p engine")))
    try:
        assert until(lambda: registry.users("720p") == 1), "the 720p engine is being built"
        start(lambda: (got.append(registry.acquire("480p", lambda: "480p engine")), other.set()))
        assert other.wait(HANG), "the 480p engine opened while the 720p one was still building"
        assert got == ["480p engine"]
    finally:
        gate.set()
    slow.join(HANG)
    assert got == ["480p engine", "720p engine"]


def test_close_runs_once_with_the_last_release():
    registry: SharedObjects[str, str] = SharedObjects()
    closed: list[str] = []
    assert registry.acquire("graph", lambda: "session") == "session"
    assert registry.acquire("graph", lambda: "another session") == "session"
    registry.release("graph", closed.append)
    assert closed == [] and registry.users("graph") == 1
    registry.release("graph", closed.append)
    assert closed == ["session"] and registry.users("graph") == 0
    assert registry.acquire("graph", lambda: "a new session") == "a new session", "opened afresh after closing"
    registry.release("graph")  # no close callback: the object is simply dropped
    assert registry.users("graph") == 0
