"""Objects shared by key: opened once by their first user, closed with their last.

Why: several filters (several cameras) in one process that key the same prepared graph need one onnxruntime session
or one TensorRT engine between them, not one each (a 720p onnxruntime session's arena holds hundreds of MiB; a
TensorRT engine is loaded, or built, once).
Opening can be slow (building a TensorRT engine takes about a minute), so the registry's lock guards only its dict,
never an open: a filter opening one graph holds up no filter opening another, and a second user of the same key
waits for the first user's open instead of opening it again. A failed open leaves nothing behind: its error goes to
the user that opened, and the next acquire of that key (a user that was waiting included) opens afresh.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class _Entry(Generic[V]):
    """One key's object, the users holding or awaiting it, and whether its open has finished (`ready`)."""

    def __init__(self) -> None:
        self.users = 0
        self.ready = threading.Event()
        self.opened = False
        self.value: V | None = None


class SharedObjects(Generic[K, V]):
    """A refcounted registry: `acquire(key, open)` returns the key's object, opening it if no one holds it, and
    `release(key, close)` gives one hold back, closing the object when it was the last."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[K, _Entry[V]] = {}

    def acquire(self, key: K, open_value: Callable[[], V]) -> V:
        """The object shared under `key`; `open_value()` makes it, outside the registry's lock, when there is none.
        Whatever `open_value` raises reaches this caller, and the key is left unopened for the next acquire."""
        while True:
            with self._lock:
                entry = self._entries.get(key)
                opener = entry is None
                if entry is None:
                    entry = self._entries[key] = _Entry()
                entry.users += 1  # counted while waiting too, so a release meanwhile never closes it under us
            if opener:
                return self._open(key, entry, open_value)
            entry.ready.wait()
            if entry.opened:
                return entry.value  # type: ignore[return-value]
            # The opener failed and took the entry away: try again, as its opener if no one else is.

    def _open(self, key: K, entry: _Entry[V], open_value: Callable[[], V]) -> V:
        try:
            entry.value = open_value()
            entry.opened = True
            return entry.value
        except BaseException:
            with self._lock:
                del self._entries[key]
            raise
        finally:
            entry.ready.set()

    def release(self, key: K, close: Callable[[V], None] | None = None) -> None:
        """Give back one hold on `key`'s object; the last one removes it and runs `close(object)` in this thread
        (so a caller can make it current first: a TensorRT engine goes while its CUDA context is current)."""
        with self._lock:
            entry = self._entries[key]
            entry.users -= 1
            if entry.users > 0:
                return
            del self._entries[key]
        if close is not None:
            close(entry.value)  # type: ignore[arg-type]

    def users(self, key: K) -> int:
        """How many hold (or await) `key`'s object: 0 when it is not open."""
        with self._lock:
            entry = self._entries.get(key)
            return entry.users if entry is not None else 0
