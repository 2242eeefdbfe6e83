"""Frames in and out of files: videos, single images, image folders and numbered image patterns.

Readers yield uint8 RGBA frames. Writers write to a hidden temporary name and only put the result in place on
`commit()`, so a failed or interrupted run never leaves a partial file that looks complete.
"""

from __future__ import annotations

import contextlib
import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from .backgrounds import IMAGE_SUFFIXES
from .errors import InputError

ALPHA_VIDEO = {".webm", ".mov", ".mkv"}
H264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow")
"""libx264's presets offered for H.264 output: each step faster writes a bigger file at the same quality (CRF) and
leaves more of the CPU to the model (docs/performance.md has the measured trade)."""
DEFAULT_H264_PRESET = "veryfast"


@dataclass
class Source:
    """A readable input: its frames, frame rate and (if known) length."""

    name: str
    fps: float
    frames: int | None
    size: tuple[int, int]
    audio_path: Path | None  # the file to take audio from, for video inputs

    def __iter__(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        pass


def is_pattern(spec: str) -> bool:
    return "%" in spec or any(c in spec for c in "*?[")


def is_image_path(path: str | Path) -> bool:
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def to_rgba(bgr: np.ndarray) -> np.ndarray:
    """OpenCV's BGR/BGRA/grey image -> RGBA (alpha kept if present)."""
    if bgr.ndim == 2:
        return cv2.cvtColor(bgr, cv2.COLOR_GRAY2RGBA)
    if bgr.shape[2] == 4:
        return cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGBA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA)


DECODE_THREADS = 1
"""A video file is decoded on one thread: inference takes the cores, and a frame-threaded decoder's extra threads
only pre-empt it (with the encoder on one thread too, `obs-rvm process` went from 0.80-0.83 to 0.87-0.88 of the bare
model's fps at 640x480 on 2 cores; one thread decodes 640x480 H.264 in about 1 ms)."""


class VideoSource(Source):
    def __init__(self, path: Path) -> None:
        self.cap = cv2.VideoCapture(str(path), cv2.CAP_FFMPEG, [cv2.CAP_PROP_N_THREADS, DECODE_THREADS])
        if not self.cap.isOpened():
            raise InputError(f"cannot open video {path}: not a video file, or a codec OpenCV cannot decode")
        ok, first = self.cap.read()
        if not ok:
            raise InputError(f"video {path} has no readable frames (empty or corrupt)")
        self._first = first
        fps = self.cap.get(cv2.CAP_PROP_FPS)
        count = int(self.cap.get(cv2.CAP_PROP_FRAME_COUNT))
        super().__init__(str(path), fps if 1 <= fps <= 1000 else 30.0, count if count > 0 else None,
                         (first.shape[1], first.shape[0]), path)

    def __iter__(self) -> Iterator[np.ndarray]:
        frame = self._first
        while frame is not None:
            yield to_rgba(frame)
            ok, frame = self.cap.read()
            if not ok:
                frame = None

    def close(self) -> None:
        self.cap.release()


class ImageSource(Source):
    def __init__(self, paths: list[Path], name: str, fps: float = 30.0) -> None:
        self.paths = paths
        first = self._read(paths[0])
        super().__init__(name, fps, len(paths), (first.shape[1], first.shape[0]), None)

    @staticmethod
    def _read(path: Path) -> np.ndarray:
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        if image is None:
            raise InputError(f"cannot read image {path}: unsupported or corrupt file")
        if image.dtype != np.uint8:  # 16-bit PNGs and friends
            image = cv2.convertScaleAbs(image, alpha=255.0 / max(1, int(np.iinfo(image.dtype).max)))
        return image

    def __iter__(self) -> Iterator[np.ndarray]:
        for path in self.paths:
            yield to_rgba(self._read(path))


def open_source(spec: str) -> Source:
    """Open a video file, an image, a folder of images, or a pattern (`frames/%05d.png`, `frames/*.jpg`)."""
    path = Path(spec).expanduser()
    if path.is_dir():
        paths = sorted(p for p in path.iterdir() if is_image_path(p))
        if not paths:
            raise InputError(f"folder {path} holds no images ({', '.join(IMAGE_SUFFIXES)})")
        return ImageSource(paths, str(path))
    if is_pattern(spec) and not path.exists():
        paths = _expand_pattern(str(path))
        if not paths:
            raise InputError(f"no files match {spec}")
        return ImageSource(paths, spec)
    if not path.exists():
        raise InputError(f"input not found: {path}")
    if not path.is_file() or not os.access(path, os.R_OK):
        raise InputError(f"cannot read input {path}: not a readable file")
    if path.stat().st_size == 0:
        raise InputError(f"input {path} is empty (0 bytes)")
    if is_image_path(path):
        return ImageSource([path], str(path))
    return VideoSource(path)


def _expand_pattern(pattern: str) -> list[Path]:
    if "%" in pattern:
        found, index, misses = [], 0, 0
        while misses < 2:  # numbering may start at 0 or 1
            candidate = Path(pattern % index)
            if candidate.exists():
                found.append(candidate)
                misses = 0
            elif found:
                break
            else:
                misses += 1
            index += 1
        return found
    return sorted(Path(p) for p in glob.glob(pattern))


class Sink:
    """Where keyed frames go. `commit` makes the output visible; `abort` removes every trace of it."""

    path: Path
    encoder = "an image writer"
    """What writes the frames (a video sink: ffmpeg's video codec, or OpenCV), for messages about the output."""

    def write(self, rgba: np.ndarray) -> None:
        raise NotImplementedError

    def commit(self) -> None:
        raise NotImplementedError

    def abort(self) -> None:
        raise NotImplementedError


def _writable_parent(path: Path) -> None:
    """Fail before any work if the output cannot be written (checked by writing: permission bits lie for root)."""
    parent = path.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"cannot create output folder {parent}: {e.strerror}") from e
    try:
        with tempfile.TemporaryFile(dir=parent):
            pass
    except OSError as e:
        raise InputError(f"cannot write to output folder {parent}: {e.strerror}") from e


class ImageSequenceSink(Sink):
    """`out/%05d.png` or a single image file; frames go to a hidden folder beside it until commit."""

    def __init__(self, spec: str, start: int = 0) -> None:
        self.path = Path(spec).expanduser()
        self.pattern = "%" in self.path.name
        if not is_image_path(self.path):
            raise InputError(f"output {spec}: use an image suffix ({', '.join(IMAGE_SUFFIXES)}) or a video file")
        _writable_parent(self.path)
        self.tmp = Path(tempfile.mkdtemp(prefix=".obs-rvm-partial-", dir=self.path.parent))
        self.index = start
        self.written: list[str] = []

    def write(self, rgba: np.ndarray) -> None:
        if not self.pattern and self.written:
            raise InputError(f"output {self.path} is a single image but the input has several frames: use a "
                             f"pattern such as out/%05d.png")
        name = (self.path.name % self.index) if self.pattern else self.path.name
        bgra = cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA)
        if not cv2.imwrite(str(self.tmp / name), bgra if self.path.suffix.lower() in (".png", ".webp", ".tif",
                                                                                      ".tiff") else bgra[..., :3]):
            raise InputError(f"cannot write {self.tmp / name}: disk full or unsupported format")
        self.written.append(name)
        self.index += 1

    def commit(self) -> None:
        for name in self.written:
            os.replace(self.tmp / name, self.path.parent / name)
        shutil.rmtree(self.tmp, ignore_errors=True)

    def abort(self) -> None:
        shutil.rmtree(self.tmp, ignore_errors=True)


class VideoSink(Sink):
    """A video file through ffmpeg (audio copied from the input), or OpenCV's writer when ffmpeg is missing.

    `threads`: the encoder's threads (None: ffmpeg's choice, about 1.5 per core). `preset`: libx264's preset for
    H.264 output (one of H264_PRESETS; None: DEFAULT_H264_PRESET).
    """

    def __init__(self, spec: str, fps: float, size: tuple[int, int], alpha: bool, audio_from: Path | None,
                 audio_seconds: float | None = None, threads: int | None = None, preset: str | None = None) -> None:
        preset = preset or DEFAULT_H264_PRESET
        if preset not in H264_PRESETS:
            raise InputError(f"unknown H.264 preset '{preset}': use one of {', '.join(H264_PRESETS)}")
        self.path = Path(spec).expanduser()
        self.threads, self.preset = threads, preset
        self.audio_seconds = audio_seconds  # how much of the audio to keep: the video's expected length
        suffix = self.path.suffix.lower()
        if not suffix:
            raise InputError(f"output {spec} has no file type: add a suffix (.mp4, .webm, .mov, .mkv) or use a "
                             f"pattern like out/%05d.png")
        if alpha and suffix not in ALPHA_VIDEO:
            raise InputError(f"{suffix} video cannot store transparency: write .webm, .mov or .mkv, or a PNG "
                             f"sequence like out/%05d.png, or choose another --background")
        _writable_parent(self.path)
        self.tmp = self.path.with_name(f".{self.path.stem}.partial{suffix}")
        self.size, self.alpha = size, alpha
        self.ffmpeg = shutil.which("ffmpeg")
        self.warning = None if self.ffmpeg else "ffmpeg not found: writing with OpenCV, without audio"
        self.encoder = "OpenCV"  # or, with ffmpeg, its video codec (below)
        if self.ffmpeg:
            codec = self._codec(suffix)
            self.encoder = codec[codec.index("-c:v") + 1]
            # Frames encoded as 4:2:0 travel as I420, converted by OpenCV (BT.601, limited range: what ffmpeg's own
            # conversion writes): a third of RGBA's bytes through the pipe and no conversion in ffmpeg, about 2.6 ms
            # of CPU less a 1280x720 frame. Odd sizes travel as RGBA: I420 needs even ones, ffmpeg pads them.
            self.i420 = codec[codec.index("-pix_fmt") + 1] == "yuv420p" and not (size[0] % 2 or size[1] % 2)
            self.proc = subprocess.Popen(self._ffmpeg_args(fps, suffix, audio_from, codec), stdin=subprocess.PIPE,
                                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        else:
            if alpha:
                raise InputError("writing transparent video needs ffmpeg: install it, or write a PNG sequence")
            fourcc = cv2.VideoWriter_fourcc(*("mp4v" if suffix in (".mp4", ".mov") else "XVID"))
            self.writer = cv2.VideoWriter(str(self.tmp), fourcc, fps, size)
            if not self.writer.isOpened():
                raise InputError(f"OpenCV cannot write {suffix} video here: install ffmpeg")

    def _ffmpeg_args(self, fps: float, suffix: str, audio_from: Path | None, codec: list[str]) -> list[str]:
        w, h = self.size
        args = [self.ffmpeg, "-hide_banner", "-loglevel", "error", "-y", "-f", "rawvideo",
                "-pix_fmt", "yuv420p" if self.i420 else "rgba", "-s", f"{w}x{h}", "-r", f"{fps:.6g}", "-i", "-"]
        if audio_from:
            # No `-shortest`: it ends the output with whichever stream ends first, and ffmpeg 7 and later cut there
            # at whole frames of both streams, so audio ending a few milliseconds before the video cost the last
            # frame. (Padding the audio with `apad` instead lets it run ahead of a slow encoder until ffmpeg 7's
            # queues overflow.) The audio is cut to the video's expected length on input instead; every frame stays.
            seconds = ["-t", f"{self.audio_seconds:.6f}"] if self.audio_seconds else []
            args += [*seconds, "-i", str(audio_from), "-map", "0:v", "-map", "1:a?"]
        args += codec
        if self.threads:
            args += ["-threads", str(self.threads)]
        if suffix in (".mp4", ".mov"):
            args += ["-movflags", "+faststart"]
        return [*args, "-f", {".mkv": "matroska", ".mov": "mov", ".mp4": "mp4", ".webm": "webm",
                              ".avi": "avi"}.get(suffix, suffix[1:]), str(self.tmp)]

    def _codec(self, suffix: str) -> list[str]:
        """ffmpeg's output options for the file type: always with its video codec and pixel format."""
        w, h = self.size
        even = ["-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2"] if (w % 2 or h % 2) else []
        if suffix == ".webm":
            return ["-c:v", "libvpx-vp9", "-pix_fmt", "yuva420p" if self.alpha else "yuv420p", "-b:v", "0",
                    "-crf", "32", "-deadline", "realtime", "-cpu-used", "8", "-c:a", "libopus"]
        if suffix == ".mov" and self.alpha:
            return ["-c:v", "prores_ks", "-profile:v", "4444", "-pix_fmt", "yuva444p10le", "-c:a", "aac"]
        if suffix == ".mkv" and self.alpha:
            return ["-c:v", "ffv1", "-pix_fmt", "bgra", "-c:a", "copy"]
        return [*even, "-c:v", "libx264", "-preset", self.preset, "-crf", "18", "-pix_fmt", "yuv420p", "-c:a", "aac"]

    def write(self, rgba: np.ndarray) -> None:
        if not self.ffmpeg:
            self.writer.write(cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR))
            return
        try:
            frame = cv2.cvtColor(rgba, cv2.COLOR_RGBA2YUV_I420) if self.i420 else np.ascontiguousarray(rgba)
            self.proc.stdin.write(frame.data)  # the array's own bytes: no copy on the way
        except BrokenPipeError:
            self.proc.wait()
            raise InputError(f"ffmpeg stopped while writing {self.path}: {self._ffmpeg_error()}") from None

    def _ffmpeg_error(self) -> str:
        lines = self.proc.stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else f"exit code {self.proc.returncode}"

    def commit(self) -> None:
        if self.ffmpeg:
            self.proc.stdin.close()
            if self.proc.wait() != 0:
                error = self._ffmpeg_error()
                self.abort()
                raise InputError(f"ffmpeg could not write {self.path}: {error}")
        else:
            self.writer.release()
        os.replace(self.tmp, self.path)

    def abort(self) -> None:
        if self.ffmpeg:
            with contextlib.suppress(BrokenPipeError, OSError):
                self.proc.stdin.close()
            self.proc.kill()
            self.proc.wait()
        else:
            self.writer.release()
        self.tmp.unlink(missing_ok=True)


def open_sink(spec: str, fps: float, size: tuple[int, int], alpha: bool, audio_from: Path | None,
              audio_seconds: float | None = None, threads: int | None = None, preset: str | None = None) -> Sink:
    if is_image_path(spec):
        return ImageSequenceSink(spec)
    return VideoSink(spec, fps, size, alpha, audio_from, audio_seconds, threads, preset)
