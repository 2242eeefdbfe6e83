"""Small rolling statistics for the status line: recent timings and event rates.

Writers and readers may be different threads; deque appends and list copies are atomic under the GIL, and a
status line that is one sample behind is fine.
"""

from __future__ import annotations

import math
from collections import deque


class Rolling:
    """The last `size` samples of a quantity (milliseconds, usually)."""

    def __init__(self, size: int) -> None:
        self._values: deque[float] = deque(maxlen=size)

    def add(self, value: float) -> None:
        self._values.append(value)

    def __len__(self) -> int:
        return len(self._values)

    def percentile(self, p: float) -> float | None:
        """Nearest-rank percentile (p in 0..100) of the samples held, None before the first one."""
        values = sorted(list(self._values))
        if not values:
            return None
        return values[min(len(values), max(1, math.ceil(p / 100 * len(values)))) - 1]

    def median(self) -> float | None:
        return self.percentile(50)


class Rate:
    """Events per second over the last `window` seconds of the caller's clock.

    The interval that reaches back into the window counts too (the last event before it is kept): an event every
    1.2 s reads 0.83/s at any moment, not 0 whenever only one event falls inside a 2 s window.
    """

    def __init__(self, window: float = 2.0) -> None:
        self.window = window
        self._times: deque[float] = deque()
        self.count = 0
        """Events since creation."""

    def tick(self, now: float) -> None:
        self._times.append(now)
        self.count += 1
        self._prune(self._times, now)

    def per_second(self, now: float) -> float:
        times = deque(self._times)
        if len(times) < 2 or now - times[-1] > self.window:  # nothing recent: the events stopped
            return 0.0
        self._prune(times, now)
        return (len(times) - 1) / max(times[-1] - times[0], 1e-9)

    def _prune(self, times: deque[float], now: float) -> None:
        """Drop events before the window, but the last of them (it starts the interval reaching into it)."""
        while len(times) > 2 and now - times[1] > self.window:
            times.popleft()
