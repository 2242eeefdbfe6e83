"""Independent NumPy references for the prepared graph: the compositing maths written out directly (not through
obs_rvm.graph), so a wrong wrapper cannot agree with itself. The bare model is obs_rvm.bench.BareModel: the
untouched RVM ONNX run the official way (float NCHW src, ratio input, r*o fed back as r*i by hand)."""

from __future__ import annotations

import math

import cv2
import numpy as np

from obs_rvm.bench import BareModel

from paths import CLIPS

__all__ = ["BareModel", "blurred_background", "clip_frames", "feather_matte", "grow_matte", "layers", "over",
           "transparent"]


def clip_frames(name: str = "again.mkv", count: int = 5, start: int = 0) -> list[np.ndarray]:
    """Consecutive RGBA frames of a real clip."""
    cap = cv2.VideoCapture(str(CLIPS / name))
    frames = []
    index = 0
    while len(frames) < count:
        ok, bgr = cap.read()
        assert ok, f"{name} has fewer than {start + count} frames"
        if index >= start:
            frames.append(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGBA))
        index += 1
    cap.release()
    return frames


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def transparent(fgr: np.ndarray, pha: np.ndarray) -> np.ndarray:
    return to_uint8(np.concatenate([fgr, pha], axis=2))


def over(fgr: np.ndarray, pha: np.ndarray, bg01: np.ndarray) -> np.ndarray:
    """out = fgr*a + bg*(1-a), opaque."""
    rgb = fgr * pha + bg01 * (1 - pha)
    return to_uint8(np.concatenate([rgb, np.ones_like(pha)], axis=2))


def blurred_background(rgb01: np.ndarray, pha: np.ndarray, sigma: float) -> np.ndarray:
    """The documented blur: block means at ~256 px, reflect-padded Gaussian, (1-alpha)-weighted, bilinear back up."""
    h, w = rgb01.shape[:2]
    f = max(1, round(max(h, w) / 256))
    weight = 1 - pha
    stack = np.concatenate([rgb01 * weight, weight, rgb01], axis=2)
    hl, wl = math.ceil(h / f), math.ceil(w / f)
    padded = np.full((hl * f, wl * f, 7), np.nan, np.float64)
    padded[:h, :w] = stack
    low = np.nanmean(padded.reshape(hl, f, wl, f, 7), axis=(1, 3))
    s = sigma / f
    if s > 1e-3:
        r = math.ceil(3 * s)
        taps = np.exp(-0.5 * (np.arange(-r, r + 1) / s) ** 2)
        taps /= taps.sum()
        for axis in (0, 1):
            if low.shape[axis] == 1:
                continue
            pad = [(0, 0)] * 3
            pad[axis] = (r, r)
            p = np.pad(low, pad, mode="reflect")
            low = np.apply_along_axis(lambda v: np.convolve(v, taps, mode="valid"), axis, p)
    eps = 1e-3
    bg = (low[..., :3] + eps * low[..., 4:7]) / (low[..., 3:4] + eps)
    if f > 1:
        bg = cv2.resize(bg.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    return bg


def grow_matte(pha: np.ndarray, pixels: int) -> np.ndarray:
    """The documented shrink/grow: a (2|n|+1)-square max (grow) or min (shrink) filter; the frame's edge repeats."""
    if not pixels:
        return pha
    kernel = np.ones((2 * abs(pixels) + 1,) * 2, np.uint8)
    op = cv2.dilate if pixels > 0 else cv2.erode
    return op(pha[..., 0], kernel, borderType=cv2.BORDER_REPLICATE)[..., None]


def feather_matte(pha: np.ndarray, pixels: int) -> np.ndarray:
    """The documented feather: a Gaussian with sigma = n/2 cut at radius n; the frame's edge repeats."""
    if not pixels:
        return pha
    size = 2 * pixels + 1
    return cv2.GaussianBlur(pha[..., 0], (size, size), pixels / 2, borderType=cv2.BORDER_REPLICATE)[..., None]


def layers(pha: np.ndarray, bg01: np.ndarray | None) -> np.ndarray:
    """The live mode's graph output: RGB = background layer (black for transparent), A = alpha."""
    rgb = np.zeros((*pha.shape[:2], 3), np.float32) if bg01 is None else bg01
    return to_uint8(np.concatenate([rgb, pha], axis=2))
