"""`obs-rvm demo`: every background mode on one picture, as a contact sheet a new user can look at.

Works on a fresh machine: the sample picture ships with the package (public domain, NASA), the image and video
backgrounds are drawn here, and the model is the default one (the official model, downloaded on first use where it
can be, else the bundled one).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from .backgrounds import BackgroundConfig, read_image_rgb
from .bench import SAMPLE
from .matting import MattingSession, SessionOptions

SETTLE_FRAMES = 4
"""RVM is recurrent: its first frame is its roughest, so each mode sees the picture a few times, like a video."""
TILE = 384


def checkerboard(height: int, width: int, cell: int = 16) -> np.ndarray:
    yy, xx = np.indices((height, width))
    board = np.where(((yy // cell) + (xx // cell)) % 2 == 0, 204, 153).astype(np.uint8)
    return np.dstack([board] * 3)


def sample_backdrop(height: int, width: int) -> np.ndarray:
    """A drawn 'office wall at dusk' for the image mode: a gradient with soft bands (no third-party picture)."""
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :]
    r = 40 + 180 * y + 20 * np.sin(6 * x)
    g = 60 + 90 * (1 - y) + 30 * np.cos(5 * x + 1)
    b = 140 + 100 * (1 - y) * x
    return np.clip(np.dstack(np.broadcast_arrays(r, g, b)), 0, 255).astype(np.uint8)


def write_backdrop_video(path: Path, height: int, width: int, frames: int = 30) -> None:
    """A short moving-stripes clip for the video mode."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (width, height))
    xx = np.arange(width, dtype=np.float32)[None, :]
    yy = np.arange(height, dtype=np.float32)[:, None]
    for i in range(frames):
        phase = 2 * np.pi * i / frames
        r = 128 + 100 * np.sin(xx / 23 + phase)
        g = 128 + 100 * np.sin(yy / 31 - phase)
        b = 128 + 100 * np.sin((xx + yy) / 41 + 2 * phase)
        rgb = np.clip(np.dstack(np.broadcast_arrays(r, g, b)), 0, 255).astype(np.uint8)
        writer.write(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    writer.release()


def _label(tile: np.ndarray, text: str) -> np.ndarray:
    tile = tile.copy()
    cv2.rectangle(tile, (0, 0), (tile.shape[1], 30), (0, 0, 0), -1)
    cv2.putText(tile, text, (10, 21), cv2.FONT_HERSHEY_SIMPLEX, 0.6, (255, 255, 255), 1, cv2.LINE_AA)
    return tile


def contact_sheet(options: SessionOptions, picture: Path | None = None,
                  on_mode: Callable[[str], None] | None = None,
                  on_status: Callable[[str], None] | None = None) -> tuple[np.ndarray, MattingSession]:
    """Key the picture with every background mode; return the sheet (RGB) and the last session (for its status)."""
    rgb = read_image_rgb(picture or SAMPLE)
    scale = TILE / max(rgb.shape[:2])
    if scale < 1:
        rgb = cv2.resize(rgb, None, fx=scale, fy=scale, interpolation=cv2.INTER_AREA)
    h, w = rgb.shape[:2]
    frame = np.dstack([rgb, np.full((h, w), 255, np.uint8)])
    tiles = [_label(rgb, "input")]
    with tempfile.TemporaryDirectory(prefix="obs-rvm-demo-") as tmp:
        backdrop, clip = Path(tmp) / "backdrop.png", Path(tmp) / "backdrop.avi"
        cv2.imwrite(str(backdrop), cv2.cvtColor(sample_backdrop(h, w), cv2.COLOR_RGB2BGR))
        write_backdrop_video(clip, h, w)
        configs = {
            "transparent": BackgroundConfig("transparent"),
            "color": BackgroundConfig("color", color=options.background.color),
            "image": BackgroundConfig("image", image=str(backdrop)),
            "video": BackgroundConfig("video", video=str(clip)),
            "blur": BackgroundConfig("blur", blur=options.background.blur),
        }
        session = MattingSession(replace(options, background=configs["transparent"]), on_status=on_status)
        for mode, config in configs.items():
            if on_mode:
                on_mode(mode)
            session.set_background(config)
            session.reset()
            for i in range(SETTLE_FRAMES):
                out = session.process(frame, t=i / 10)
            out = out.astype(np.float32)
            if mode == "transparent":  # show the alpha over a checkerboard
                a = out[..., 3:] / 255
                out = out[..., :3] * a + checkerboard(h, w) * (1 - a)
            tiles.append(_label(out[..., :3].astype(np.uint8), mode))
        session.close()
    cols = 3
    rows = [np.hstack(tiles[i:i + cols]) for i in range(0, len(tiles), cols)]
    return np.vstack(rows), session


def default_output() -> Path:
    return Path.cwd() / "obs-rvm-demo.png"

