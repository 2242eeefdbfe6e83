"""Matte refresh in live mode: how often the render thread hands a frame over, and whether the worker may skip
keying a frame because the picture has not moved since the last keyed one.

Live mode draws every frame itself over the newest matte, so keying fewer frames only lets the outline trail a
little longer; the CPU it frees goes to OBS, the encoder and the rest of the machine.
"""

from __future__ import annotations

import cv2
import numpy as np

THUMB_SIDE = 80
"""The still test looks at a grey copy about this wide: a few microseconds, and camera noise averages out."""
PIXEL_CHANGE = 10
"""A thumbnail pixel moved when its grey value changed by more than this (0-255)."""
MOVED_SHARE = 0.002
"""The picture moved when more than this share of the thumbnail's pixels did (a talking mouth is enough)."""
MAX_SKIP_NS = 1_000_000_000
"""Key at least this often even while the picture is still (lighting drifts, a hand creeps in slowly)."""
SETTLE = 4
"""Frames keyed after a motion even if still: RVM's recurrent state needs a few to settle on the new picture."""


def thumbnail(frame: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    scale = THUMB_SIDE / max(height, width)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    grey = cv2.cvtColor(frame, cv2.COLOR_RGBA2GRAY)
    return cv2.resize(grey, size, interpolation=cv2.INTER_AREA).astype(np.int16)


class StillDetector:
    """Compares each frame with the last one keyed (not the last one seen: slow motion adds up until it counts)."""

    def __init__(self) -> None:
        self._keyed: np.ndarray | None = None
        self._keyed_time: int | None = None
        self._settling = 0
        self.skipped = 0

    def should_key(self, frame: np.ndarray, frame_time: int) -> bool:
        """True if this frame must be keyed (then it becomes the reference); False counts it as skipped."""
        thumb = thumbnail(frame)
        previous, at = self._keyed, self._keyed_time
        moved = (previous is None or at is None or previous.shape != thumb.shape
                 or float((np.abs(thumb - previous) > PIXEL_CHANGE).mean()) > MOVED_SHARE)
        if moved or self._settling or frame_time - (at or 0) >= MAX_SKIP_NS:
            self._settling = SETTLE if moved else max(0, self._settling - 1)
            self._keyed, self._keyed_time = thumb, frame_time
            return True
        self.skipped += 1
        return False

    def forget(self) -> None:
        self._keyed = self._keyed_time = None
        self._settling = 0


class RefreshCadence:
    """Render thread: with a refresh every N frames, a frame is handed over only when N video frames have passed
    since the last hand-over (1: every frame the worker can take)."""

    def __init__(self) -> None:
        self._since = 0

    def tick(self) -> None:
        """Once per video frame."""
        self._since += 1

    def due(self, every: int) -> bool:
        return self._since >= max(1, every)

    def captured(self) -> None:
        self._since = 0
