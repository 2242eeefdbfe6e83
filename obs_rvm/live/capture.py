"""Live frame sources for the virtual camera and the preview: a V4L2 camera, or a video file played in real time.

Both hand out numbered, time-stamped uint8 RGBA frames one at a time. A file is paced to its own frame rate and,
like a camera that is read too slowly, skips frames rather than fall behind the clock, so the whole live pipeline
can be tested (and recorded from) without a camera.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass

import cv2
import numpy as np

from ..backgrounds import cover
from ..errors import DeviceError
from ..video_io import Source, open_source, to_rgba
from . import v4l2

INPUT_FORMATS = {"auto": "MJPG", "mjpeg": "MJPG", "yuyv": "YUYV"}
"""auto asks for MJPEG first: most webcams give 30 fps above 640x480 only compressed; YUYV is the fallback."""


@dataclass
class Frame:
    index: int
    """Running number of the captured frame."""
    source_index: int
    """Frame number in the source (the file position, restarting when a file loops; `index` for a camera)."""
    t: float
    """time.monotonic() when the frame was ready."""
    rgba: np.ndarray
    decode_s: float
    """Time spent decoding and converting it (not waiting for it)."""


class Capture:
    """A live source. `read` blocks until the next frame and returns None at the end of a file."""

    name: str
    fps: float
    size: tuple[int, int]
    """(width, height) of the frames handed out."""

    def __init__(self, size: tuple[int, int], native: tuple[int, int], mirror: bool) -> None:
        self.size, self.native, self.mirror = size, native, mirror
        self.count = 0

    def read(self, stop: threading.Event) -> Frame | None:
        raise NotImplementedError

    def describe(self) -> str:
        return self.name

    def close(self) -> None:
        pass

    def _finish(self, rgba: np.ndarray) -> np.ndarray:
        """Scale to the requested size (cover, like a camera's crop) and mirror if asked."""
        w, h = self.size
        if rgba.shape[1::-1] != self.size:
            rgba = cover(rgba, h, w)
        return cv2.flip(rgba, 1) if self.mirror else rgba


def is_device(spec: str) -> bool:
    """A camera index ("0") or a device node, as opposed to a file."""
    return spec.isdigit() or spec.startswith("/dev/")


def device_path(spec: str) -> str:
    return f"/dev/video{spec}" if spec.isdigit() else spec


class CameraCapture(Capture):
    def __init__(self, spec: str, size: tuple[int, int] | None, fps: float | None, mirror: bool = False,
                 input_format: str = "auto") -> None:
        path = device_path(spec)
        try:
            info = v4l2.query(path)
        except FileNotFoundError:
            raise DeviceError(v4l2.missing_camera_message(path, v4l2.list_devices())) from None
        if not info.capture:
            cameras = [d for d in v4l2.list_devices() if d.capture and not d.loopback]
            raise DeviceError(f"{info.label()} is not a capture device (cameras often add a metadata node): use "
                              f"{v4l2.describe(cameras)}")
        if hasattr(cv2.utils, "logging"):
            cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)  # our messages say it better
        node = re.fullmatch(r"/dev/video(\d+)", os.path.realpath(path))  # by-id links too; OpenCV prefers indexes
        cap = cv2.VideoCapture(int(node.group(1)) if node else path, cv2.CAP_V4L2)
        if not cap.isOpened():
            raise DeviceError(f"cannot open camera {info.label()}: it is busy (another program is using it?)")
        cap.set(cv2.CAP_PROP_FOURCC, cv2.VideoWriter_fourcc(*INPUT_FORMATS[input_format]))
        if size:
            cap.set(cv2.CAP_PROP_FRAME_WIDTH, size[0])
            cap.set(cv2.CAP_PROP_FRAME_HEIGHT, size[1])
        if fps:
            cap.set(cv2.CAP_PROP_FPS, fps)
        cap.set(cv2.CAP_PROP_BUFFERSIZE, 2)  # a stale frame in the driver's queue is latency
        if hasattr(cv2, "CAP_PROP_READ_TIMEOUT_MSEC"):
            cap.set(cv2.CAP_PROP_READ_TIMEOUT_MSEC, 3000)  # notice an unplugged camera in 3 s, not 10
        ok, first = cap.read()
        if not ok:
            cap.release()
            raise DeviceError(f"camera {info.label()} opened but sends no frames: it is busy (another program is "
                              f"using it?) or does not support this size/format (try without -W/-H/--fps)")
        self.cap, self.name = cap, info.label()
        self.format = v4l2.fourcc_name(int(cap.get(cv2.CAP_PROP_FOURCC)))
        reported = cap.get(cv2.CAP_PROP_FPS)
        self.fps = reported if 1 <= reported <= 240 else (fps or 30.0)
        native = (first.shape[1], first.shape[0])
        super().__init__(size or native, native, mirror)

    def read(self, stop: threading.Event) -> Frame | None:
        if not self.cap.grab():
            raise DeviceError(f"camera {self.name} stopped sending frames: unplugged, or taken by another program")
        t = time.monotonic()
        start = time.perf_counter()
        ok, bgr = self.cap.retrieve()
        if not ok:
            raise DeviceError(f"camera {self.name} sent a frame that cannot be decoded (try --input-format yuyv)")
        rgba = self._finish(to_rgba(bgr))
        frame = Frame(self.count, self.count, t, rgba, time.perf_counter() - start)
        self.count += 1
        return frame

    def describe(self) -> str:
        w, h = self.native
        return f"{self.name} {w}x{h} {self.format} {self.fps:g} fps"

    def close(self) -> None:
        self.cap.release()


class FileCapture(Capture):
    """A video (or image sequence) played at its own frame rate, from the first `read` on."""

    def __init__(self, spec: str, size: tuple[int, int] | None, mirror: bool = False, loop: bool = False) -> None:
        self.spec, self.loop = spec, loop
        self.source = self._open()
        self.name, self.fps = self.source.name, self.source.fps
        self._frames = iter(self.source)
        self._position = 0
        self._start: float | None = None
        self.skipped = 0
        """Frames skipped because decoding fell behind the clock."""
        super().__init__(size or self.source.size, self.source.size, mirror)

    def _open(self) -> Source:
        return open_source(self.spec)

    def read(self, stop: threading.Event) -> Frame | None:
        if self._start is None:
            self._start = time.monotonic()
        while True:
            due = self._start + self.count / self.fps
            wait = due - time.monotonic()
            if wait > 0 and stop.wait(wait):
                return None
            start = time.perf_counter()
            rgba = next(self._frames, None)
            if rgba is None:
                if not self.loop or self._position == 0:
                    return None
                self.source.close()
                self.source, self._position = self._open(), 0
                self._frames = iter(self.source)
                continue
            position, self._position = self._position, self._position + 1
            self.count += 1
            if time.monotonic() >= due + 1 / self.fps:  # the next frame is due already: drop this one, as a
                self.skipped += 1                       # camera overwrites a frame nobody read in time
                continue
            rgba = self._finish(rgba)
            return Frame(self.count - 1, position, time.monotonic(), rgba, time.perf_counter() - start)

    def describe(self) -> str:
        w, h = self.native
        return f"{self.name} {w}x{h} {self.fps:g} fps{' (looping)' if self.loop else ''}"

    def close(self) -> None:
        self.source.close()


def open_capture(spec: str, size: tuple[int, int] | None = None, fps: float | None = None, *, mirror: bool = False,
                 loop: bool = False, input_format: str = "auto") -> Capture:
    """A camera for "/dev/videoN" or "N"; otherwise a file played in real time (`fps` then only sets the output)."""
    if is_device(spec):
        return CameraCapture(spec, size, fps, mirror, input_format)
    return FileCapture(spec, size, mirror, loop)
