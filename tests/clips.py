"""Real frames for the GPU tests: the shared clips, one after another (scene cuts included, as in real use)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np

from paths import CLIPS

CLIP_NAMES = ("again.mkv", "book.mkv", "help.mkv", "thanks.mkv")


def clip_frames(count: int, width: int, height: int, folder: Path = CLIPS) -> Iterator[np.ndarray]:
    """`count` consecutive RGBA frames at width x height; RuntimeError when the clips yield none at all (missing,
    unreadable), where looping over them again would never end."""
    produced = 0
    while produced < count:
        before = produced
        for clip in CLIP_NAMES:
            cap = cv2.VideoCapture(str(folder / clip))
            try:
                while produced < count:
                    ok, bgr = cap.read()
                    if not ok:
                        break
                    produced += 1
                    yield cv2.cvtColor(cv2.resize(bgr, (width, height)), cv2.COLOR_BGR2RGBA)
            finally:
                cap.release()
            if produced >= count:
                return
        if produced == before:
            raise RuntimeError(f"no frames from the clips in {folder} ({', '.join(CLIP_NAMES)})")
