"""Background sources: what replaces the real background, as the prepared graph's extra inputs.

Each source hands the engine the same array object until something changes, so engines that keep inputs on the
GPU upload a colour or a picture once, not every frame.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import cv2
import numpy as np

from .errors import InputError
from .graph import BACKGROUND, BLUR_H, BLUR_W, Variant, blur_geometry

MODES = ("transparent", "color", "image", "video", "blur")
DEFAULT_COLOR = (0, 177, 64)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff")


@dataclass(frozen=True)
class BackgroundConfig:
    """The user's choice of background, shared by the CLI and the OBS filter settings."""

    mode: str = "blur"
    color: tuple[int, int, int] = DEFAULT_COLOR
    image: str | None = None
    video: str | None = None
    blur: float = 50.0

    @property
    def variant(self) -> Variant:
        return {"transparent": Variant.TRANSPARENT, "blur": Variant.BLUR}.get(self.mode, Variant.REPLACE)


class Background:
    """A background for one graph variant; `inputs` gives the graph inputs for a frame size and time."""

    variant: ClassVar[Variant]

    def inputs(self, height: int, width: int, t: float) -> dict[str, np.ndarray]:
        return {}

    def close(self) -> None:
        """Release files; the default holds none."""


class Transparent(Background):
    variant = Variant.TRANSPARENT


class _PerSize(Background):
    """A background that depends only on the frame size: computed once per size."""

    variant = Variant.REPLACE

    def __init__(self) -> None:
        self._size: tuple[int, int] | None = None
        self._inputs: dict[str, np.ndarray] = {}

    def inputs(self, height: int, width: int, t: float) -> dict[str, np.ndarray]:
        if self._size != (height, width):
            self._inputs, self._size = self._make(height, width), (height, width)
        return self._inputs

    def _make(self, height: int, width: int) -> dict[str, np.ndarray]:
        raise NotImplementedError


class Color(_PerSize):
    def __init__(self, rgb: tuple[int, int, int]) -> None:
        super().__init__()
        if len(rgb) != 3 or not all(0 <= int(c) <= 255 for c in rgb):
            raise InputError(f"colour must be three values 0-255 (R,G,B), got {rgb}")
        self.rgb = tuple(int(c) for c in rgb)

    def _make(self, height: int, width: int) -> dict[str, np.ndarray]:
        return {BACKGROUND: np.broadcast_to(np.array(self.rgb, np.uint8), (height, width, 3)).copy()}


class Image(_PerSize):
    def __init__(self, path: str | Path) -> None:
        super().__init__()
        self.rgb = read_image_rgb(path)

    def _make(self, height: int, width: int) -> dict[str, np.ndarray]:
        return {BACKGROUND: cover(self.rgb, height, width)}


class Blur(_PerSize):
    variant = Variant.BLUR

    def __init__(self, strength: float) -> None:
        super().__init__()
        if not 0 <= strength <= 100:
            raise InputError(f"blur strength must be between 0 and 100, got {strength}")
        self.strength = float(strength)

    def _make(self, height: int, width: int) -> dict[str, np.ndarray]:
        geo = blur_geometry(height, width)
        sigma = blur_sigma(self.strength, height, width) / geo.factor
        return {BLUR_H: gaussian_matrix(geo.height, sigma), BLUR_W: gaussian_matrix(geo.width, sigma).T.copy()}


class Video(Background):
    """A looping video, paced by the caller's clock (seconds), decoded sequentially and cover-cropped."""

    variant = Variant.REPLACE

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path).expanduser()
        self._cap = open_video(self.path)
        self.fps = self._cap.get(cv2.CAP_PROP_FPS) or 30.0
        self.fps = self.fps if 1 <= self.fps <= 240 else 30.0
        self._index = -1  # index of the frame held in self._rgb
        self._rgb: np.ndarray | None = None
        self._frames: int | None = None  # learnt at the first end of file
        self._out: tuple[int, int, int] | None = None  # (index, height, width) of self._inputs
        self._inputs: dict[str, np.ndarray] = {}
        self._lock = threading.Lock()

    def inputs(self, height: int, width: int, t: float) -> dict[str, np.ndarray]:
        with self._lock:
            target = int(max(t, 0.0) * self.fps)
            if self._frames:
                target %= self._frames
            self._seek(target)
            if self._out != (self._index, height, width):
                self._inputs = {BACKGROUND: cover(self._rgb, height, width)}
                self._out = (self._index, height, width)
            return self._inputs

    def _seek(self, target: int) -> None:
        if target < self._index:
            self._rewind()
        while self._index < target or self._rgb is None:
            ok, bgr = self._cap.read()
            if not ok:
                if self._index < 0:
                    raise InputError(f"background video {self.path} has no readable frames")
                self._frames = self._index + 1
                target %= self._frames
                self._rewind()
                continue
            self._index += 1
            if self._index >= target:
                self._rgb = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)

    def _rewind(self) -> None:
        self._cap.release()
        self._cap = open_video(self.path)
        self._index = -1

    def close(self) -> None:
        with self._lock:  # a switch from another thread must not release the capture while `inputs` reads it
            self._cap.release()


def make_background(config: BackgroundConfig) -> Background:
    """Build the source for a configuration; a bad path or value raises InputError now, not at the first frame."""
    if config.mode == "transparent":
        return Transparent()
    if config.mode == "color":
        return Color(config.color)
    if config.mode == "image":
        if not config.image:
            raise InputError("background 'image' needs an image file (--image PATH)")
        return Image(config.image)
    if config.mode == "video":
        if not config.video:
            raise InputError("background 'video' needs a video file (--video PATH)")
        return Video(config.video)
    if config.mode == "blur":
        return Blur(config.blur)
    raise InputError(f"unknown background '{config.mode}': choose one of {', '.join(MODES)}")


def read_image_rgb(path: str | Path) -> np.ndarray:
    path = Path(path).expanduser()
    if not path.is_file():
        raise InputError(f"image not found: {path}")
    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"cannot read image {path}: not a supported image file ({', '.join(IMAGE_SUFFIXES)})")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def open_video(path: Path) -> cv2.VideoCapture:
    if not path.is_file():
        raise InputError(f"video not found: {path}")
    cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise InputError(f"cannot open video {path}: unsupported or corrupt file")
    return cap


def cover(rgb: np.ndarray, height: int, width: int) -> np.ndarray:
    """Scale to cover height x width keeping the aspect ratio, then centre-crop (like CSS background-size: cover)."""
    ih, iw = rgb.shape[:2]
    scale = max(height / ih, width / iw)
    sh, sw = max(height, round(ih * scale)), max(width, round(iw * scale))
    if (sh, sw) != (ih, iw):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        rgb = cv2.resize(rgb, (sw, sh), interpolation=interp)
    top, left = (sh - height) // 2, (sw - width) // 2
    return np.ascontiguousarray(rgb[top:top + height, left:left + width])


def blur_sigma(strength: float, height: int, width: int) -> float:
    """Gaussian sigma in frame pixels: strength 100 is 1/40 of the long side, so the look is the same at any size."""
    return strength / 100 * max(height, width) / 40


def gaussian_matrix(n: int, sigma: float) -> np.ndarray:
    """[n, n] matrix M with (M @ x) = Gaussian blur of x, mirrored at the borders (numpy's 'reflect')."""
    if sigma <= 1e-3 or n == 1:
        return np.eye(n, dtype=np.float32)
    radius = math.ceil(3 * sigma)
    offsets = np.arange(-radius, radius + 1)
    taps = np.exp(-0.5 * (offsets / sigma) ** 2)
    taps /= taps.sum()
    period = 2 * (n - 1)
    m = np.zeros((n, n), np.float64)
    for i in range(n):
        j = np.abs((i + offsets) % period)
        j = np.where(j >= n, period - j, j)
        np.add.at(m[i], j, taps)
    return m.astype(np.float32)
