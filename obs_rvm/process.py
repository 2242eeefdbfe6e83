"""`obs-rvm process`: key a video, an image or an image sequence into a file.

Decoding, inference and encoding run in three threads joined by short bounded queues, so reading and writing hide
behind inference (which releases the GIL) and no frame is ever dropped.
"""

from __future__ import annotations

import itertools
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from .errors import InputError
from .graph import Variant
from .matting import MattingSession
from .threads import StageThread
from .video_io import Sink, Source

_END = object()


@dataclass
class ProcessResult:
    frames: int
    seconds: float
    backend: str

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds else 0.0


def _put(q: queue.Queue, item, stop: threading.Event) -> bool:
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _drain(q: queue.Queue, stop: threading.Event, workers: Iterable[StageThread]) -> Iterator:
    """Items from `q` until the end marker, surfacing a failed worker instead of waiting forever."""
    while True:
        try:
            item = q.get(timeout=0.1)
        except queue.Empty:
            for worker in workers:
                worker.check()
            if stop.is_set():
                return
            continue
        if item is _END:
            return
        yield item


def process(session: MattingSession, source: Source, sink: Sink, *, max_frames: int | None = None,
            on_frame: Callable[[int], None] | None = None) -> ProcessResult:
    """Key every frame of `source` (or the first `max_frames`) into `sink`; commits only if all were written."""
    decoded: queue.Queue = queue.Queue(maxsize=4)
    keyed: queue.Queue = queue.Queue(maxsize=4)
    stop = threading.Event()

    def read() -> None:
        for frame in itertools.islice(source, max_frames):
            if not _put(decoded, frame, stop):
                return
        _put(decoded, _END, stop)

    def write() -> None:
        for frame in _drain(keyed, stop, ()):
            sink.write(frame)

    reader, writer = StageThread(read, "obs-rvm-decode"), StageThread(write, "obs-rvm-encode")
    count = 0
    start = time.perf_counter()
    reader.start()
    writer.start()
    try:
        for frame in _drain(decoded, stop, (reader, writer)):
            out = session.process(frame, count / source.fps)
            # The session may reuse its output buffer: hand the writer its own copy.
            if not _put(keyed, np.array(out, copy=True), stop):
                break
            count += 1
            if on_frame:
                on_frame(count)
            writer.check()
        reader.check()
        _put(keyed, _END, stop)
        writer.join()
        writer.check()
        if count == 0:
            raise InputError(f"{source.name} produced no frames")
        sink.commit()
    except BaseException:
        stop.set()
        writer.join(timeout=5)
        sink.abort()
        raise
    finally:
        stop.set()
        reader.join(timeout=5)
        source.close()
    return ProcessResult(count, time.perf_counter() - start, session.status.backend)


def encoder_threads(session: MattingSession) -> int | None:
    """One encoder thread where the model runs on the CPU (it takes the cores: more threads only pre-empt it),
    ffmpeg's own choice where a GPU keys faster than one thread encodes."""
    return None if session.on_gpu else 1


def output_has_alpha(session: MattingSession) -> bool:
    return session.background.variant is Variant.TRANSPARENT
