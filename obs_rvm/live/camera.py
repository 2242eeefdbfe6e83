"""`obs-rvm camera`: camera -> AI Background -> v4l2loopback (or a file), without OBS.

Three stages in threads joined by single-slot hand-offs (LatestSlot): capture and inference + compositing (live.py),
and the output here. A stage that is slower than the one before it makes that one drop frames instead of queueing
them, so the delay from capture to output stays bounded by about one frame of each stage. The output runs on its
own clock at the chosen frame rate and repeats the newest keyed frame while inference catches up, as a camera
would: readers and recordings get a steady frame rate whatever the inference speed.
"""

from __future__ import annotations

import contextlib
import csv
import signal
import statistics
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import DeviceError, InputError
from ..graph import Variant
from ..matting import MattingSession, SessionOptions
from ..paths import atomic_write
from ..threads import StageThread
from ..video_io import Sink, open_sink
from .capture import is_device, open_capture
from .stages import FrameRecord, Keyed, LivePipeline

REPORT_EVERY = 100
"""--benchmark prints a line every this many output frames."""
CATCH_UP_S = 1.0
"""An output clock that fell behind (a busy machine) makes up missed ticks up to this far back, so a recording
keeps real time; beyond it the missed ticks are skipped."""


@dataclass
class CameraConfig:
    input: str
    output: str
    size: tuple[int, int] | None = None
    fps: float | None = None
    mirror: bool = False
    loop: bool = False
    duration: float | None = None
    """Stop after this many seconds of output (None: at the end of a file, or on Ctrl-C)."""
    benchmark: bool = False
    frame_log: Path | None = None
    input_format: str = "auto"


@dataclass
class CameraResult:
    output: str
    fps: float
    """The output's target frame rate."""
    seconds: float
    """From the start of capture to the end of the run."""
    captured: int
    write_times: list[float]
    """time.monotonic() of each write: the output clock's ticks as they happened."""
    records: list[FrameRecord] = field(default_factory=list)
    dropped: int = 0
    """Captured frames replaced by a newer one before inference took them."""
    late_ticks: int = 0
    """Output ticks written late because the machine was busy (made up at once)."""
    skipped_ticks: int = 0
    """Output ticks given up after falling more than CATCH_UP_S behind."""

    @property
    def keyed(self) -> int:
        return len(self.records)

    @property
    def written(self) -> int:
        return len(self.write_times)

    @property
    def write_span(self) -> float:
        """From the first write to the last."""
        return self.write_times[-1] - self.write_times[0] if self.write_times else 0.0

    @property
    def output_fps(self) -> float:
        return (self.written - 1) / self.write_span if self.write_span > 0 else 0.0

    @property
    def keyed_fps(self) -> float:
        return self.keyed / self.seconds if self.seconds > 0 else 0.0

    def latencies_ms(self) -> list[float]:
        return [1000 * r.latency_s for r in self.records if r.latency_s is not None]

    def summary(self) -> str:
        lat = sorted(self.latencies_ms())
        latency = (f"latency {statistics.median(lat):.0f} ms median, {_quantile(lat, 0.95):.0f} ms p95, "
                   f"{lat[-1]:.0f} ms max from capture to output" if lat else "nothing written")
        return (f"{self.written} frames to {self.output} at {self.output_fps:.1f} fps (target {self.fps:g}); keyed "
                f"{self.keyed} of {self.captured} captured frames ({self.keyed_fps:.1f} fps, {self.dropped} dropped "
                f"before inference); {latency}" + (f"; {self.late_ticks} output ticks late, {self.skipped_ticks} "
                                                   f"skipped (busy machine)" if self.late_ticks else ""))


def _quantile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))] if sorted_values else 0.0


def open_output(spec: str, size: tuple[int, int], fps: float, variant: Variant) -> Sink:
    """A v4l2loopback device for /dev/... paths, else a video file or image pattern (atomic, as in `process`)."""
    if is_device(spec):
        from .v4l2 import open_loopback

        if variant is Variant.TRANSPARENT:
            raise InputError("a virtual camera has no transparency: choose --background color, image, video or blur")
        return open_loopback(spec, size[0], size[1], fps)
    return open_sink(spec, fps, size, variant is Variant.TRANSPARENT, None)


class _Output:
    """The third stage: writes the newest keyed frame to the sink on a steady clock."""

    def __init__(self, pipeline: LivePipeline, sink: Sink, fps: float, max_frames: int | None,
                 report: Callable[[str], None] | None) -> None:
        self.pipeline, self.sink, self.period, self.max_frames = pipeline, sink, 1 / fps, max_frames
        self.report = report
        self.late_ticks = 0
        self.skipped_ticks = 0
        self.write_s: list[float] = []
        self.write_t: list[float] = []
        self._mark = (0, 0)  # (decoded, keyed) counts at the last report

    @property
    def written(self) -> int:
        return len(self.write_t)

    def run(self) -> None:
        slot, stop = self.pipeline.keyed, self.pipeline.stop
        current: Keyed | None = None
        due = 0.0
        while not stop.is_set():
            if current is None:  # nothing keyed yet: the clock starts with the first frame
                item = slot.take(timeout=0.1)
            else:
                wait = due - time.monotonic()
                if wait > 0 and stop.wait(wait):
                    break
                item = slot.take(timeout=0)
            if item is None and slot.closed:
                item = slot.take(timeout=0)  # a last frame put just before the close
                if item is None:
                    break
            if item is not None:
                current = item
            if current is None:
                continue
            self._write(current)
            if self.max_frames and self.written >= self.max_frames:
                break
            now = time.monotonic()
            due = (due or now) + self.period
            if now - due > CATCH_UP_S:  # hopelessly behind: restart the clock rather than burst
                self.skipped_ticks += int((now - due) / self.period)
                due = now
            elif now > due:  # the next tick is late already: write it at once (a recording keeps real time)
                self.late_ticks += 1
        stop.set()

    def _write(self, keyed: Keyed) -> None:
        start = time.perf_counter()
        self.sink.write(keyed.rgba)
        self.write_s.append(time.perf_counter() - start)
        record, now = keyed.record, time.monotonic()
        if record.first_write_t is None:
            record.first_write_t, record.first_output = now, self.written
        self.write_t.append(now)
        record.writes += 1
        if self.report and self.written % REPORT_EVERY == 0:
            self.report(self._report_line())

    def _report_line(self) -> str:
        """Per-stage medians since the last report (medians: robust on a busy machine)."""
        decoded, keyed = self._mark
        decode = self.pipeline.decode_s[decoded:]
        records = self.pipeline.records[keyed:]
        self._mark = (decoded + len(decode), keyed + len(records))
        latency = sorted(1000 * r.latency_s for r in records if r.latency_s is not None)
        seconds = REPORT_EVERY * self.period

        def ms(values: list[float]) -> str:
            return f"{1000 * statistics.median(values):.1f} ms" if values else "-"

        return (f"frames {self.written - REPORT_EVERY + 1}-{self.written}: capture/decode {ms(decode)}, "
                f"inference+composite {ms([r.infer_s for r in records])}, output {ms(self.write_s[-REPORT_EVERY:])}"
                f" | in {len(decode) / seconds:.1f} fps, keyed {len(records) / seconds:.1f} fps | latency "
                f"{statistics.median(latency) if latency else 0:.0f} ms median, {_quantile(latency, 0.95):.0f} ms "
                f"p95")


def run_camera(config: CameraConfig, options: SessionOptions, log: Callable[[str], None] = print,
               sink: Sink | None = None) -> CameraResult:
    """Run until the input ends, `config.duration` passes, or Ctrl-C (or SIGTERM); then commit the output.

    `sink` replaces opening `config.output` (the benchmark feeds the loopback writer /dev/null).
    """
    capture = open_capture(config.input, config.size, config.fps, mirror=config.mirror, loop=config.loop,
                           input_format=config.input_format)
    try:
        fps = config.fps or capture.fps
        if is_device(config.input) and capture.native != capture.size:  # the camera does not offer that size
            log(f"note: {capture.name} delivers {capture.native[0]}x{capture.native[1]}; scaling to "
                f"{capture.size[0]}x{capture.size[1]}")
        sink = sink or open_output(config.output, capture.size, fps, options.background.variant)
    except BaseException:
        capture.close()
        raise
    if getattr(sink, "warning", None):
        log(f"warning: {sink.warning}")
    session: MattingSession | None = None
    pipeline: LivePipeline | None = None
    output: _Output | None = None
    try:
        session = MattingSession(options, on_status=log)
        pipeline = LivePipeline(capture, session)
        pipeline.warm_up()
        log(f"{capture.describe()} -> {config.output} at {fps:g} fps; {session.status.backend}, downsample "
            f"{session.status.downsample_ratio:g}, background {options.background.mode}. Ctrl-C stops.")
        max_frames = round(config.duration * fps) if config.duration else None
        output = _Output(pipeline, sink, fps, max_frames, log if config.benchmark else None)
        writer = StageThread(output.run, "obs-rvm-output")
        pipeline.start()
        writer.start()
        with _sigterm_as_interrupt():
            _wait(writer, pipeline.stop)
        end = time.monotonic()
        pipeline.close()
        writer.check()
        pipeline.check()
    except DeviceError as e:
        (pipeline or capture).close()
        if output and output.written and pipeline.workers[0].error and not is_device(config.output):
            sink.commit()  # an unplugged camera should not cost the recording made so far
            raise DeviceError(f"{e} (kept the {output.written} frames recorded in {sink.path})") from None
        sink.abort()
        raise
    except BaseException:
        (pipeline or capture).close()
        sink.abort()
        raise
    finally:
        if session:
            session.close()
    sink.commit()
    result = CameraResult(config.output, fps, end - pipeline.t0, len(pipeline.decode_s), output.write_t,
                          pipeline.records, pipeline.frames.dropped, output.late_ticks, output.skipped_ticks)
    if config.frame_log:
        write_frame_log(config.frame_log, result, pipeline.t0)
    return result


def _wait(writer: threading.Thread, stop: threading.Event) -> None:
    """Wait for the output stage; Ctrl-C asks every stage to stop and waits for them to finish cleanly."""
    while writer.is_alive():
        try:
            writer.join(timeout=0.2)
        except KeyboardInterrupt:
            stop.set()


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """`kill` (and systemd) stop the camera as cleanly as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


LOG_FIELDS = ["seq", "index", "source_index", "capture_ms", "keyed_ms", "first_write_ms", "writes", "first_output",
              "latency_ms", "inference_ms"]


def write_frame_log(path: Path, result: CameraResult, t0: float) -> None:
    """One CSV row per keyed frame: which input frame it was, and its timings (ms from the start)."""

    def ms(t: float | None) -> str:
        return "" if t is None else f"{1000 * (t - t0):.2f}"

    with atomic_write(Path(path), "w") as f:
        out = csv.writer(f)
        out.writerow(LOG_FIELDS)
        for r in result.records:
            out.writerow([r.seq, r.index, r.source_index, ms(r.capture_t), ms(r.keyed_t), ms(r.first_write_t),
                          r.writes, "" if r.first_output is None else r.first_output,
                          "" if r.latency_s is None else f"{1000 * r.latency_s:.2f}", f"{1000 * r.infer_s:.2f}"])


def read_frame_log(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def run_preview(options: SessionOptions, device: str) -> int:
    """`obs-rvm demo --camera`: the keyed camera in a window (same capture and inference stages)."""
    from .preview import preview

    return preview(options, device)
