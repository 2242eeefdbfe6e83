"""Independent NumPy references for the prepared graph: the bare RVM model run the official way, and the
compositing maths written out directly (not through obs_rvm.graph), so a wrong wrapper cannot agree with itself."""

from __future__ import annotations

import math
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort


class BareRVM:
    """The untouched RVM ONNX with its official I/O: float NCHW src, [1,1,1,1] zero states, ratio as an input."""

    def __init__(self, path: Path, ratio: float) -> None:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.ratio = np.array([ratio], np.float32)
        self.reset()

    def reset(self) -> None:
        self.state = [np.zeros((1, 1, 1, 1), np.float32)] * 4

    def __call__(self, rgba: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """uint8 RGBA [H,W,4] -> (fgr [H,W,3], pha [H,W,1]) as float32 in 0..1."""
        src = (rgba[..., :3].astype(np.float32) / 255).transpose(2, 0, 1)[None]
        feeds = {"src": src, "downsample_ratio": self.ratio}
        feeds |= {f"r{i + 1}i": s for i, s in enumerate(self.state)}
        fgr, pha, *self.state = self.session.run(None, feeds)
        return fgr[0].transpose(1, 2, 0), pha[0].transpose(1, 2, 0)


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)


def transparent(fgr: np.ndarray, pha: np.ndarray) -> np.ndarray:
    return to_uint8(np.concatenate([fgr, pha], axis=2))


def over(fgr: np.ndarray, pha: np.ndarray, bg01: np.ndarray) -> np.ndarray:
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
