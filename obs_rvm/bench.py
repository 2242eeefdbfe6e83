"""`obs-rvm bench`: what the pipeline costs on top of the bare model, and whether memory stays flat.

The bare model and the pipeline are timed in the same run, alternating frame by frame, so a noisy machine slows
both alike and their ratio stays meaningful.
"""

from __future__ import annotations

import multiprocessing
import os
import resource
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backgrounds import cover, read_image_rgb
from .errors import BackendError, InputError
from .matting import MattingSession, SessionOptions

SAMPLE = Path(__file__).with_name("data") / "astronaut.png"


class BareModel:
    """The untouched RVM ONNX run the official way: float NCHW `src`, zero [1,1,1,1] first states, ratio input."""

    def __init__(self, path: Path, ratio: float, threads: int | None = None) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        # Same threading as the pipeline's engine: a spinning pool would steal the cores from the other session.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        src_type = next(i.type for i in self.session.get_inputs() if i.name == "src")
        self.dtype = np.float16 if "float16" in src_type else np.float32
        self.ratio = np.array([ratio], np.float32)
        self.reset()

    def reset(self) -> None:
        self.state = [np.zeros((1, 1, 1, 1), self.dtype)] * 4

    @staticmethod
    def src(rgba: np.ndarray) -> np.ndarray:
        """uint8 RGBA [H,W,4] -> the model's float `src` [1,3,H,W] in 0..1 (contiguous)."""
        return np.ascontiguousarray((rgba[..., :3].astype(np.float32) / 255).transpose(2, 0, 1)[None])

    def step(self, src: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """src float [1,3,H,W] in 0..1 -> (fgr, pha) NCHW, feeding r*o back as r*i."""
        feeds = {"src": src.astype(self.dtype, copy=False), "downsample_ratio": self.ratio}
        feeds |= {f"r{i + 1}i": s for i, s in enumerate(self.state)}
        fgr, pha, *self.state = self.session.run(None, feeds)
        return fgr, pha

    def __call__(self, rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGBA [H,W,4] -> (fgr [H,W,3], pha [H,W,1]) as float32 in 0..1."""
        fgr, pha = self.step(self.src(rgba))
        return fgr[0].transpose(1, 2, 0).astype(np.float32), pha[0].transpose(1, 2, 0).astype(np.float32)


def sample_frame(height: int, width: int) -> np.ndarray:
    """The shipped sample picture as a uint8 RGBA frame of any size (a real person, not noise)."""
    rgb = cover(read_image_rgb(SAMPLE), height, width)
    return np.dstack([rgb, np.full((height, width), 255, np.uint8)])


@dataclass
class ThroughputResult:
    size: tuple[int, int]
    ratio: float
    backend: str
    bare_ms: float
    pipeline_ms: float

    @property
    def fps_ratio(self) -> float:
        return self.bare_ms / self.pipeline_ms

    def line(self) -> str:
        w, h = self.size
        return (f"{w}x{h} ratio {self.ratio:g}: bare model {1000 / self.bare_ms:6.1f} fps ({self.bare_ms:.1f} ms), "
                f"pipeline {1000 / self.pipeline_ms:6.1f} fps ({self.pipeline_ms:.1f} ms), "
                f"pipeline/bare {self.fps_ratio:.2f}")


def throughput(options: SessionOptions, width: int, height: int, frames: int) -> ThroughputResult:
    """Median per-frame time of the bare model and of the whole pipeline, interleaved frame by frame."""
    frame = sample_frame(height, width)
    session = MattingSession(options)
    for _ in range(3):
        session.process(frame, 0.0)
    ratio = session.status.downsample_ratio or 0.0
    bare = BareModel(session.model.path, ratio, options.threads)
    src = BareModel.src(frame)
    for _ in range(3):
        bare.step(src)
    bare_times, pipe_times = [], []
    for i in range(frames):
        t0 = time.perf_counter()
        bare.step(src)
        t1 = time.perf_counter()
        session.process(frame, i / 30)
        t2 = time.perf_counter()
        bare_times.append(t1 - t0)
        pipe_times.append(t2 - t1)
    result = ThroughputResult((width, height), ratio, session.status.backend,
                              1000 * statistics.median(bare_times), 1000 * statistics.median(pipe_times))
    session.close()
    return result


@dataclass
class GpuStages:
    """Median per-frame GPU time of each stage (CUDA events) and the wall time of the whole process() call."""

    size: tuple[int, int]
    ratio: float
    backend: str
    upload_ms: float
    infer_ms: float
    download_ms: float
    wall_ms: float

    @property
    def gpu_ms(self) -> float:
        return self.upload_ms + self.infer_ms + self.download_ms

    def line(self) -> str:
        w, h = self.size
        return (f"{w}x{h} ratio {self.ratio:g}: upload {self.upload_ms:.2f} ms, inference+composite "
                f"{self.infer_ms:.2f} ms, download {self.download_ms:.2f} ms = GPU step {self.gpu_ms:.2f} ms; "
                f"process() {self.wall_ms:.2f} ms wall ({1000 / self.wall_ms:.0f} fps) [{self.backend}]")


def gpu_stages(options: SessionOptions, width: int, height: int, frames: int,
               on_status: Callable[[str], None] | None = None) -> GpuStages:
    """Per-stage GPU times of the TensorRT engine: upload, inference + compositing, download (medians)."""
    from .engines.tensorrt import TensorRTEngine

    frame = sample_frame(height, width)
    session = MattingSession(options, on_status=on_status)
    try:
        for _ in range(10):  # builds or loads the engine, then warms up clocks and caches
            session.process(frame, 0.0)
        engine = session.engine
        if not isinstance(engine, TensorRTEngine):
            raise BackendError(f"per-stage GPU timing needs the tensorrt backend, not {session.status.backend}")
        stages: dict[str, list[float]] = {"upload": [], "infer": [], "download": []}
        walls = []
        for i in range(frames):
            t0 = time.perf_counter()
            session.process(frame, i / 30)
            walls.append(time.perf_counter() - t0)
            for name, ms in engine.stage_ms().items():
                stages[name].append(ms)
        median = {name: statistics.median(values) for name, values in stages.items()}
        return GpuStages((width, height), session.status.downsample_ratio or 0.0, session.status.backend,
                         median["upload"], median["infer"], median["download"], 1000 * statistics.median(walls))
    finally:
        session.close()


def _rss_worker(options: SessionOptions, width: int, height: int, frames: int, checkpoint: int, queue) -> None:
    frame = sample_frame(height, width)
    session = MattingSession(options)
    peaks = {}
    for i in range(1, frames + 1):
        session.process(frame, i / 30)
        if i in (checkpoint, frames):
            peaks[i] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(peaks)


def peak_rss(options: SessionOptions, width: int, height: int, frames: int = 500, checkpoint: int = 50) -> dict:
    """Peak RSS (MiB) after `checkpoint` and after `frames` frames, in a fresh process so nothing else counts."""
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_rss_worker, args=(options, width, height, frames, checkpoint, queue))
    proc.start()
    peaks = queue.get()
    proc.join()
    return peaks


def clip_frames(clip: str, width: int, height: int, frames: int) -> tuple[list[np.ndarray], float]:
    """The first `frames` frames of `clip` as RGBA at `width`x`height` (looped if the clip is shorter), and its fps."""
    import itertools

    import cv2

    from .video_io import open_source

    source = open_source(clip)
    try:
        decoded = list(itertools.islice(source, frames))
    finally:
        source.close()
    if not decoded:
        raise InputError(f"{clip} produced no frames")
    looped = list(itertools.islice(itertools.cycle(decoded), frames))
    return [f if f.shape[:2] == (height, width) else cv2.resize(f, (width, height), interpolation=cv2.INTER_AREA)
            for f in looped], source.fps


def cpu_seconds() -> float:
    """CPU time of all this process's threads and of its finished child processes (ffmpeg's encoder)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def usable_cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass
class ClipResult:
    size: tuple[int, int]
    frames: int
    process_fps: float
    pipeline_fps: float
    bare_fps: float
    preset: str
    process_cpu_ms: float
    """CPU time a frame of the whole `obs-rvm process` run: decoding, keying, encoding, all threads."""
    pipeline_cpu_ms: float
    bare_cpu_ms: float
    cores: int

    @property
    def ceiling(self) -> float:
        """The most process/bare can be here: the process's CPU time a frame spread over every core without a gap,
        against the bare model's time a frame. Decoding and encoding cost CPU time the bare model never spends."""
        return self.cores * (1000 / self.bare_fps) / self.process_cpu_ms

    def line(self) -> str:
        w, h = self.size
        cores = f"{self.cores} core{'s' if self.cores > 1 else ''}"
        return (f"{w}x{h}, {self.frames} frames: obs-rvm process {self.process_fps:.1f} fps (decode, key, encode with "
                f"x264 {self.preset}), pipeline alone {self.pipeline_fps:.1f} fps, bare model {self.bare_fps:.1f} fps: "
                f"process/bare {self.process_fps / self.bare_fps:.2f}; CPU time a frame: process "
                f"{self.process_cpu_ms:.1f} ms, pipeline alone {self.pipeline_cpu_ms:.1f} ms, bare model "
                f"{self.bare_cpu_ms:.1f} ms, so on {cores} process/bare can reach {self.ceiling:.2f} at most")


def process_vs_bare(options: SessionOptions, clip: str, width: int, height: int, frames: int,
                    preset: str | None = None) -> ClipResult:
    """`obs-rvm process` on a clip of this size (decode + key + encode) vs the pipeline and the bare model on the
    same decoded frames, all in one run; `preset` is the encoder's (None: the default of `obs-rvm process`).

    The clip is first written at `width`x`height` (H.264, as cameras and phones record), so the process run decodes
    a real file of that size. The in-memory runs are taken before and after the process run and averaged, to cancel
    drift on a noisy host.
    """
    import tempfile

    from .process import encoder_threads, process
    from .video_io import VideoSink, open_source

    decoded, fps = clip_frames(clip, width, height, frames)
    session = MattingSession(options)
    try:
        session.process(decoded[0], 0.0)
        bare = BareModel(session.model.path, session.status.downsample_ratio or 0.0, options.threads)

        def rate(run: Callable[[int, np.ndarray], None]) -> tuple[float, float]:
            """Frames a second, and CPU milliseconds a frame."""
            session.reset()
            bare.reset()
            busy = 0.0
            cpu = cpu_seconds()
            for i, frame in enumerate(decoded):
                t0 = time.perf_counter()
                run(i, frame)
                busy += time.perf_counter() - t0
            return len(decoded) / busy, 1000 * (cpu_seconds() - cpu) / len(decoded)

        srcs = [BareModel.src(f) for f in decoded]
        bare.step(srcs[0])  # warm-up

        def key(i: int, frame: np.ndarray) -> None:
            session.process(frame, i / fps)

        def bare_step(i: int, frame: np.ndarray) -> None:
            bare.step(srcs[i])

        before = rate(bare_step), rate(key)
        with tempfile.TemporaryDirectory(prefix="obs-rvm-bench-") as tmp:
            sized = Path(tmp) / "clip.mp4"
            sink = VideoSink(str(sized), fps, (width, height), False, None)
            for frame in decoded:
                sink.write(frame)
            sink.commit()
            source = open_source(str(sized))
            out = VideoSink(str(Path(tmp) / "out.mp4"), fps, (width, height), False, None,
                            threads=encoder_threads(session), preset=preset)
            session.reset()
            cpu = cpu_seconds()
            result = process(session, source, out, max_frames=len(decoded))  # waits for the encoder to exit
            process_cpu_ms = 1000 * (cpu_seconds() - cpu) / result.frames
        after = rate(bare_step), rate(key)
    finally:
        session.close()
    (bare_before, key_before), (bare_after, key_after) = before, after
    return ClipResult((width, height), result.frames, result.fps, pipeline_fps=(key_before[0] + key_after[0]) / 2,
                      bare_fps=(bare_before[0] + bare_after[0]) / 2, preset=out.preset, process_cpu_ms=process_cpu_ms,
                      pipeline_cpu_ms=(key_before[1] + key_after[1]) / 2,
                      bare_cpu_ms=(bare_before[1] + bare_after[1]) / 2, cores=usable_cores())
