"""A matting session: the one object the CLI, the virtual camera and the OBS filter all drive.

It owns the model, the background source and the engine for the current frame size, and it decides when RVM's
recurrent state must be forgotten: on a new resolution, on request, and on a hard scene cut (the state of the old
scene would smear into the new one for a few frames).
"""

from __future__ import annotations

import logging
import math
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace

import cv2
import numpy as np

from .backgrounds import Background, BackgroundConfig, make_background
from .engines import Engine, open_engine, plan
from .errors import BackendError, InputError
from .graph import GraphSpec, prepare
from .heap import release_free_memory
from .models import ModelFile, ProgressFn, resolve_model
from .turns import INFERENCE

log = logging.getLogger("obs_rvm")

CPU_TARGET_SIDE = 320
GPU_TARGET_SIDE = 512
"""RVM's guidance: the downsampled frame should be 256-512 px on its long side. A GPU affords the top of that
range (0.375 at 720p, 0.25 at 1080p, 0.125 at 4K); on a CPU a smaller one keeps live video real-time."""


def auto_downsample_ratio(height: int, width: int, gpu: bool) -> float:
    """Largest multiple of 1/16 that keeps the long side at or under the target (never below 1/16, never above 1)."""
    target = GPU_TARGET_SIDE if gpu else CPU_TARGET_SIDE
    return min(1.0, max(1, math.floor(16 * target / max(height, width))) / 16)


@dataclass(frozen=True)
class SessionOptions:
    model: str | None = None
    """Catalog name or .onnx path; None is the default model (or $OBS_RVM_MODEL)."""
    background: BackgroundConfig = field(default_factory=BackgroundConfig)
    downsample_ratio: float | None = None
    """None (or 0) picks it from the resolution."""
    backend: str = "auto"
    threads: int | None = None
    fp16: bool = True
    """TensorRT and TensorRT-RTX: run RVM's recurrent core in FP16 where the GPU has fast FP16 (onnxruntime's other
    providers run FP32)."""
    scene_cut: float = 40.0
    """Mean absolute change (0-255) of a tiny grey thumbnail above which the state is reset; 0 disables."""
    matte_grow: int = 0
    """Edge control, px at the frame's resolution: grow (> 0) or shrink (< 0) the matte, -10..10."""
    feather: int = 0
    """Edge control, px: soften the matte's edge, 0..10."""
    layers: bool | None = False
    """Return the layers (RGB = background layer, A = alpha) for a compositor that has the current frame (OBS's
    live mode) instead of the composite. None: layers when the engine runs on the CPU (it cannot key every frame),
    the composite on a GPU."""


@dataclass
class SessionStatus:
    """What is running, for status lines and the CLI summary."""

    backend: str = ""
    model: str = ""
    size: tuple[int, int] | None = None
    downsample_ratio: float | None = None
    notes: list[str] = field(default_factory=list)
    """Why better backends were skipped."""
    resets: int = 0
    layers: bool = False
    """Whether process() returns layers (see SessionOptions.layers) rather than the composite."""


SLOWEST_ENV = "OBS_RVM_MIN_INFERENCE_MS"
"""Diagnostics: each frame takes at least this long to key, as on a slower machine. Tests of behaviour under slow
inference (OBS's live video, the camera dropping frames) set it, so their outcome does not depend on the machine."""


def min_inference_s() -> float:
    value = os.environ.get(SLOWEST_ENV, "")
    try:
        return max(0.0, float(value or 0) / 1000)
    except ValueError:
        log.warning("%s=%r is not a number of milliseconds: ignored", SLOWEST_ENV, value)
        return 0.0

class MattingSession:
    """Key frames one after another. Not thread-safe: one thread drives it (the OBS filter's worker, the CLI)."""

    def __init__(self, options: SessionOptions | None = None, *, download_progress: ProgressFn | None = None,
                 on_status: Callable[[str], None] | None = None, cancel: threading.Event | None = None) -> None:
        """`cancel`, once set, ends a model preparation in flight (Cancelled): its owner is going away."""
        self.options = options or SessionOptions()
        self._on_status = on_status or (lambda message: None)
        self._cancel = cancel
        self._candidates, skipped = plan(self.options.backend, self.options.fp16)
        self.status = SessionStatus(notes=list(skipped))
        self.model: ModelFile = resolve_model(self.options.model, progress=download_progress)
        self.status.model = self.model.name
        self.background: Background = make_background(self.options.background)
        self._engine: Engine | None = None
        self._key: tuple | None = None
        self._thumb: np.ndarray | None = None
        self._lock = threading.Lock()  # guards background swaps against the processing thread
        self._slowest_s = min_inference_s()

    @property
    def on_gpu(self) -> bool:
        """Whether the engine that runs (or will run first) keys on a GPU."""
        return self._candidates[0].gpu

    @property
    def engine(self) -> Engine | None:
        """The engine keying the current frame size (None before the first frame)."""
        return self._engine

    # -- live changes -----------------------------------------------------------------------------------------

    def set_background(self, config: BackgroundConfig) -> None:
        """Swap the background; raises InputError (and keeps the old one) if the new one cannot be used."""
        new = make_background(config)
        with self._lock:
            old, self.background = self.background, new
            self.options = replace(self.options, background=config)
        old.close()

    def reset(self) -> None:
        if self._engine:
            self._engine.reset()
        self._thumb = None
        self.status.resets += 1

    # -- the frame path ---------------------------------------------------------------------------------------

    def process(self, frame: np.ndarray, t: float | None = None) -> np.ndarray:
        """Key one uint8 RGBA [H, W, 4] frame. `t` (seconds) paces video backgrounds; default: wall clock.

        The result may be reused by the next call: copy it to keep it.
        """
        if frame.ndim != 3 or frame.shape[2] != 4 or frame.dtype != np.uint8 or 0 in frame.shape:
            raise InputError(f"expected a uint8 RGBA frame [H, W, 4], got {frame.dtype} {list(frame.shape)}")
        height, width = frame.shape[:2]
        with self._lock:
            background = self.background
        engine = self._engine_for(height, width, background)
        if self._scene_cut(frame):
            engine.reset()
            self.status.resets += 1
        extra = background.inputs(height, width, time.monotonic() if t is None else t)
        started = time.perf_counter()
        with INFERENCE.turn(self):  # several filters in one OBS take turns, each with its own state
            out = engine.run(np.ascontiguousarray(frame), extra)
        if (rest := started + self._slowest_s - time.perf_counter()) > 0:
            (self._cancel or threading.Event()).wait(rest)
        return out

    def _engine_for(self, height: int, width: int, background: Background) -> Engine:
        key = (height, width, background.variant)
        if key == self._key and self._engine is not None:
            return self._engine
        # One engine at a time: a 720p onnxruntime session holds ~250 MiB, so keeping one per background variant
        # would triple OBS's memory for the price of a faster mode switch. Freed before the next one is made.
        self._close_engine()
        engine = self._open(height, width, background)
        engine.reset()  # a new size or a new variant starts from a clean state
        self._thumb = None
        self._engine, self._key = engine, key
        self.status.size = (width, height)
        return engine

    def _close_engine(self) -> None:
        engine, self._engine, self._key = self._engine, None, None
        if engine is not None:
            engine.close()
            del engine
            release_free_memory()

    def _open(self, height: int, width: int, background: Background) -> Engine:
        while True:
            candidate = self._candidates[0]
            ratio = self.options.downsample_ratio or auto_downsample_ratio(height, width, candidate.gpu)
            layers = (not candidate.gpu) if self.options.layers is None else self.options.layers
            spec = GraphSpec(width, height, ratio, background.variant, fp16=candidate.fp16,
                             matte_grow=self.options.matte_grow, feather=self.options.feather, layers=layers,
                             pad_conv_channels=candidate.pad_conv_channels)
            self._on_status(f"preparing the model for {width}x{height}")
            graph = prepare(self.model, spec, self._cancel)
            try:
                engine = open_engine(candidate, graph, threads=self.options.threads, on_status=self._on_status)
            except BackendError as e:
                if len(self._candidates) == 1 or self.options.backend != "auto":
                    raise
                self._candidates.pop(0)
                self.status.notes.append(f"{candidate.label()} failed: {e}")
                log.warning("falling back from %s: %s", candidate.label(), e)
                continue
            self.status.backend = engine.describe()
            self.status.downsample_ratio = ratio
            self.status.layers = layers
            return engine

    def _scene_cut(self, frame: np.ndarray) -> bool:
        if not self.options.scene_cut:
            return False
        thumb = cv2.resize(cv2.cvtColor(frame, cv2.COLOR_RGBA2GRAY), (32, 18), interpolation=cv2.INTER_AREA)
        thumb = thumb.astype(np.int16)
        previous, self._thumb = self._thumb, thumb
        return previous is not None and float(np.abs(thumb - previous).mean()) > self.options.scene_cut

    def close(self) -> None:
        INFERENCE.forget(self)
        self._close_engine()
        self.background.close()
