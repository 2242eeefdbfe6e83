"""The live stages shared by `obs-rvm camera` and the preview window: capture and inference, each in a thread.

They are joined by single-slot hand-offs (LatestSlot): when inference is slower than the camera, the frame waiting
for it is replaced by a newer one rather than queued, so a result is never more than about one inference older
than the newest frame. The caller is the third stage and takes results from `keyed`.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

import numpy as np

from ..matting import MattingSession
from ..slot import LatestSlot
from ..threads import StageThread
from .capture import Capture, Frame


@dataclass
class FrameRecord:
    """The life of one keyed frame: which input it was, and when it was captured, keyed and first written."""

    seq: int
    index: int
    source_index: int
    capture_t: float
    keyed_t: float
    infer_s: float
    first_write_t: float | None = None
    writes: int = 0
    first_output: int | None = None
    """Number of the first output frame that showed it (output frames count from 0)."""

    @property
    def latency_s(self) -> float | None:
        return None if self.first_write_t is None else self.first_write_t - self.capture_t


@dataclass
class Keyed:
    record: FrameRecord
    rgba: np.ndarray


class LivePipeline:
    """The capture and inference stages; `records` holds every keyed frame's record, in order."""

    def __init__(self, capture: Capture, session: MattingSession) -> None:
        self.capture, self.session = capture, session
        self.frames: LatestSlot[Frame] = LatestSlot()
        self.keyed: LatestSlot[Keyed] = LatestSlot()
        self.stop = threading.Event()
        self.records: list[FrameRecord] = []
        self.decode_s: list[float] = []
        self.t0 = time.monotonic()
        self.workers: list[StageThread] = []

    def warm_up(self) -> None:
        """Prepare the model for the frame size before the clock starts (the first run can take seconds), then
        forget the state of the blank frame."""
        w, h = self.capture.size
        self.session.process(np.zeros((h, w, 4), np.uint8), 0.0)
        self.session.reset()

    def start(self) -> None:
        self.t0 = time.monotonic()
        self.workers = [StageThread(self._capture, "obs-rvm-capture"), StageThread(self._infer, "obs-rvm-infer")]
        for worker in self.workers:
            worker.start()

    def _capture(self) -> None:
        try:
            while not self.stop.is_set():
                frame = self.capture.read(self.stop)
                if frame is None:
                    return
                self.decode_s.append(frame.decode_s)
                self.frames.put(frame)
        finally:
            self.frames.close()

    def _infer(self) -> None:
        try:
            while not self.stop.is_set():
                frame = self.frames.take(timeout=0.1)
                if frame is None:
                    if self.frames.closed:
                        return
                    continue
                start = time.perf_counter()
                out = np.array(self.session.process(frame.rgba, frame.t - self.t0), copy=True)
                record = FrameRecord(len(self.records), frame.index, frame.source_index, frame.t, time.monotonic(),
                                     time.perf_counter() - start)
                self.records.append(record)
                self.keyed.put(Keyed(record, out))
        finally:
            self.keyed.close()

    def check(self) -> None:
        """Re-raise the first stage failure (capture before inference: an unplugged camera explains the rest)."""
        for worker in self.workers:
            worker.check()

    def close(self) -> None:
        self.stop.set()
        self.frames.close()
        self.keyed.close()
        for worker in self.workers:
            worker.join(timeout=10)
        self.capture.close()
