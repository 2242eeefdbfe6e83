"""Pipeline stages as threads whose failure reaches the thread that drives them."""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import Callable

log = logging.getLogger("obs_rvm")


def lower_thread_priority(nice: int) -> None:
    """Lower the calling thread's priority to `nice`; threads it starts later (onnxruntime's pool, a decoder's
    frame threads) inherit it.

    Linux niceness is per thread. Elsewhere this is a no-op (Windows and macOS set priorities per process here).
    """
    if sys.platform.startswith("linux"):
        try:
            os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), nice)
        except OSError as e:
            log.debug("cannot lower the priority of thread %s: %s", threading.current_thread().name, e)


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
