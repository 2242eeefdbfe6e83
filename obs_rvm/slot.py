"""A single-slot hand-off between threads: the newest item wins, nothing ever queues up.

Live video (the OBS filter, the virtual camera) must never fall behind: when the consumer is slower than the
producer, older frames are dropped rather than queued, so latency stays bounded by one frame of each stage.
"""

from __future__ import annotations

import threading
from typing import Generic, TypeVar

T = TypeVar("T")


class LatestSlot(Generic[T]):
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._item: T | None = None
        self._closed = False
        self.dropped = 0
        """Items replaced before anyone took them."""

    def put(self, item: T) -> None:
        """Never blocks: replaces (drops) an item nobody took yet."""
        with self._cond:
            if self._item is not None:
                self.dropped += 1
            self._item = item
            self._cond.notify()

    def take(self, timeout: float | None = None) -> T | None:
        """Wait for an item and remove it; None on timeout or once closed."""
        with self._cond:
            if not self._cond.wait_for(lambda: self._item is not None or self._closed, timeout):
                return None
            item, self._item = self._item, None
            return item

    def peek(self) -> T | None:
        """The current item without removing it (for a renderer that redraws the latest result)."""
        with self._cond:
            return self._item

    def close(self) -> None:
        """Wake every waiter; further takes return None at once."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
