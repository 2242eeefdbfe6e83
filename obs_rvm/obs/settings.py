"""The filter's settings: keys, defaults, and their meaning as session options.

Saved scene collections and obs-websocket clients use these keys, so they never change. Parsing never fails:
a bad value becomes an ObsRvmError when the worker applies it, which the filter shows instead of crashing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass

from ..backgrounds import DEFAULT_COLOR, BackgroundConfig
from ..errors import InputError
from ..graph import MAX_FEATHER, MAX_GROW
from ..matting import SessionOptions

BACKGROUND, COLOR, IMAGE_PATH, VIDEO_PATH, BLUR = "background", "color", "image_path", "video_path", "blur"
MODEL, BACKEND, DOWNSAMPLE_RATIO, FP16 = "model", "backend", "downsample_ratio", "fp16"
MATTE_GROW, FEATHER = "matte_grow", "feather"
SYNC, MATTE_REFRESH, SKIP_STILL = "sync", "matte_refresh", "skip_still"
SYNC_MODES = ("auto", "sync", "live")
"""auto: in sync on a GPU (it keeps up with the video), live video on the CPU (it cannot); sync: every frame shown
is keyed (adds the inference time as latency); live: OBS shows the current frame over the newest matte (which may
trail)."""
LAYERS = {"auto": None, "sync": False, "live": True}
"""SessionOptions.layers per sync mode: None lets the session choose by where the engine runs."""
REFRESH_EVERY = (1, 2, 3)


def rgb_to_obs_color(rgb: tuple[int, int, int]) -> int:
    """OBS stores colours as 0xAABBGGRR."""
    r, g, b = rgb
    return 0xFF000000 | (b << 16) | (g << 8) | r


def obs_color_to_rgb(value: int) -> tuple[int, int, int]:
    return value & 0xFF, (value >> 8) & 0xFF, (value >> 16) & 0xFF


def defaults() -> dict[str, str | int | float | bool]:
    return {
        BACKGROUND: "blur",
        COLOR: rgb_to_obs_color(DEFAULT_COLOR),
        IMAGE_PATH: "",
        VIDEO_PATH: "",
        BLUR: 50,
        MODEL: "",  # the default rule (models.resolve_model): the official model, else the bundled one
        BACKEND: "auto",
        DOWNSAMPLE_RATIO: 0.0,
        FP16: True,
        MATTE_GROW: 0,
        FEATHER: 0,
        SYNC: "auto",
        MATTE_REFRESH: 1,
        SKIP_STILL: False,
    }


def inference_threads() -> int:
    """CPU threads for onnxruntime inside OBS: half the cores, so OBS's own render and encoder threads keep theirs."""
    return max(1, (os.cpu_count() or 2) // 2)


@dataclass(frozen=True)
class FilterSettings:
    background: BackgroundConfig
    model: str
    backend: str
    downsample_ratio: float
    fp16: bool
    matte_grow: int = 0
    feather: int = 0
    sync: str = "auto"
    matte_refresh: int = 1
    """Live mode: key every frame (1), every 2nd or every 3rd."""
    skip_still: bool = False
    """Live mode: skip keying while the picture is still (keys at least once a second, and at once on motion)."""

    @property
    def engine_key(self) -> tuple:
        """What a MattingSession is built from: a change here rebuilds the session, anything else is live."""
        return self.model, self.backend, self.downsample_ratio, self.fp16, self.matte_grow, self.feather, self.sync

    def check(self) -> None:
        """The filter's own wording for what the shared checks would phrase with command-line flags."""
        if not (self.downsample_ratio == 0 or 0 < self.downsample_ratio <= 1):
            raise InputError(f"downsample ratio must be 0 (auto) or between 0 and 1, got {self.downsample_ratio:g}")
        if not -MAX_GROW <= self.matte_grow <= MAX_GROW:
            raise InputError(f"shrink / grow matte must be {-MAX_GROW} to {MAX_GROW} px, got {self.matte_grow}")
        if not 0 <= self.feather <= MAX_FEATHER:
            raise InputError(f"feather must be 0 to {MAX_FEATHER} px, got {self.feather}")
        if self.sync not in SYNC_MODES:
            raise InputError(f"sync must be one of {', '.join(SYNC_MODES)}, got '{self.sync}'")
        if self.matte_refresh not in REFRESH_EVERY:
            raise InputError(f"matte refresh must be every 1, 2 or 3 frames, got {self.matte_refresh}")
        mode = self.background.mode
        if mode in ("image", "video") and not getattr(self.background, mode):
            raise InputError(f"background '{mode}' needs a {mode} file: choose one in the filter's properties")

    def session_options(self) -> SessionOptions:
        return SessionOptions(model=self.model or None, background=self.background,
                              downsample_ratio=self.downsample_ratio or None, backend=self.backend,
                              threads=inference_threads(), fp16=self.fp16, matte_grow=self.matte_grow,
                              feather=self.feather, layers=LAYERS.get(self.sync))


def parse(get_string: Callable[[str], str], get_int: Callable[[str], int], get_float: Callable[[str], float],
          get_bool: Callable[[str], bool]) -> FilterSettings:
    """Read settings through typed getters (obs_data_get_* in OBS, a dict in tests)."""
    background = BackgroundConfig(
        mode=get_string(BACKGROUND).strip() or "blur",
        color=obs_color_to_rgb(get_int(COLOR)),
        image=get_string(IMAGE_PATH).strip() or None,
        video=get_string(VIDEO_PATH).strip() or None,
        blur=get_float(BLUR),
    )
    return FilterSettings(background=background, model=get_string(MODEL).strip(),
                          backend=get_string(BACKEND).strip() or "auto",
                          downsample_ratio=get_float(DOWNSAMPLE_RATIO), fp16=get_bool(FP16),
                          matte_grow=int(get_int(MATTE_GROW)), feather=int(get_int(FEATHER)),
                          sync=get_string(SYNC).strip() or "auto", matte_refresh=int(get_int(MATTE_REFRESH)),
                          skip_still=get_bool(SKIP_STILL))

