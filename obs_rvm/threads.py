"""Pipeline stages as threads whose failure reaches the thread that drives them."""

from __future__ import annotations

import threading
from collections.abc import Callable


class StageThread(threading.Thread):
    """A daemon thread whose exception is re-raised in the caller by `check`."""

    def __init__(self, target: Callable[[], None], name: str) -> None:
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            self._target_fn()
        except BaseException as e:  # handed to the main thread
            self.error = e

    def check(self) -> None:
        if self.error:
            raise self.error
