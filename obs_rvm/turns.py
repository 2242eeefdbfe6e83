"""One inference at a time per process, taken in turns: what several filters (several cameras) in one OBS share.

Why: each filter used to run its own onnxruntime session with half the cores, all at once. N filters took N halves
of a 2-core machine, fought OBS's render thread (and software OpenGL) for the cores, and their total matte rate did
not grow (OBS skipped 30% of its frames with 3 filters). In turns, one inference runs at a time with the one thread
budget, and a filter with a frame waiting is served after every filter that was already waiting: round-robin, so
each gets an equal share. Each filter keeps its own session, recurrent state and background: only the cores are
shared, never a state (a filter's state is fed only with its own frames).

A single user (the CLI, or one filter) never waits: a turn is taken at once when no one else holds it.

Pacing: OBS counts the frames its render thread finished late. A filter reads that count once a video frame
(observe_lag); each late frame lengthens a pause every turn ends with (no one keys during it), and every calm second
shortens it again. So keying slows down until OBS keeps its frame rate, and speeds up when OBS has room.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

SHARE_WINDOW_S = 3.0
"""A user that took a turn within this many seconds counts as sharing (for the status line)."""
PAUSE_STEP_S = 0.02
"""The pause grows by this much for each frame OBS rendered late..."""
PAUSE_EASE = 0.8
"""...and shrinks to this share for each second without one (a hiccup, such as OBS loading a scene, is forgotten
within seconds)."""
MAX_PAUSE_S = 0.25
"""Keying never pauses longer than this between turns: where OBS's own drawing is what runs late (software OpenGL at
1280x720), a longer pause would only age the matte (measured: OBS lagged as much with one matte a second)."""


class Turns:
    """A fair (first come, first served) lock over inference, with a count of who uses it."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0
        self._last_turn: dict[int, float] = {}
        self.pause_s = 0.0
        """Held at the end of every turn (see the module's pacing)."""
        self._lagged: int | None = None
        self._calm_since = 0.0

    @contextmanager
    def turn(self, user: object) -> Iterator[None]:
        """Hold the turn for one inference of `user` (any object standing for one filter or session)."""
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            while ticket != self._serving:
                self._cond.wait()
            self._last_turn[id(user)] = time.monotonic()
        try:
            yield
        finally:
            if self.pause_s > 0:
                time.sleep(self.pause_s)
            with self._cond:
                self._serving += 1
                self._cond.notify_all()

    @property
    def taken(self) -> int:
        """Turns served so far (for tests and benchmarks)."""
        return self._serving

    def observe_lag(self, lagged: int, now: float | None = None) -> None:
        """The host's running count of frames rendered late (OBS: obs_get_lagged_frames), read once a frame."""
        now = time.monotonic() if now is None else now
        with self._cond:
            if self._lagged is not None and lagged > self._lagged:
                self.pause_s = min(MAX_PAUSE_S, self.pause_s + PAUSE_STEP_S * (lagged - self._lagged))
                self._calm_since = now
            elif now - self._calm_since >= 1.0:
                self.pause_s = self.pause_s * PAUSE_EASE if self.pause_s > 0.002 else 0.0
                self._calm_since = now
            self._lagged = lagged

    def forget(self, user: object) -> None:
        """`user` is gone (a filter removed): it no longer counts as sharing."""
        with self._cond:
            self._last_turn.pop(id(user), None)

    def sharing(self) -> int:
        """How many users took a turn within the last SHARE_WINDOW_S seconds."""
        now = time.monotonic()
        with self._cond:
            return sum(1 for t in self._last_turn.values() if now - t <= SHARE_WINDOW_S)


INFERENCE = Turns()
"""The process's one set of turns: every MattingSession (every OBS filter, the CLI) keys through it."""
