"""Live video mode on OBS's GPU: the current frame of the filter's source over the newest matte.

The worker's graph returns layers (RGB = background layer, A = alpha, see GraphSpec.layers) at the inference rate;
every render, the filter's input in this frame (GpuFrames.render_input) is drawn through live_composite.effect,
which does the graph's final step, out = frame * alpha + background * (1 - alpha) (transparent: RGB = frame, A = alpha).
So the video keeps OBS's frame rate and its own latency whatever the inference rate; only the outline trails.
Every method runs with the graphics context entered.
"""

from __future__ import annotations

import ctypes
from pathlib import Path

import numpy as np

from . import libobs as obs
from .frames import DynamicTexture, draw_texture

EFFECT = Path(__file__).with_name("live_composite.effect")


class LiveDraw:
    """The effect and the layers texture of one filter instance."""

    def __init__(self) -> None:
        self._effect: int | None = None
        self._texture = DynamicTexture()

    def _load(self) -> int:
        if self._effect is None:
            error = ctypes.c_void_p()
            effect = obs.gs_effect_create_from_file(str(EFFECT).encode(), ctypes.byref(error))
            if not effect:
                detail = obs.text(ctypes.string_at(error.value)) if error.value else "file not found"
                obs.bfree(error.value)
                raise RuntimeError(f"cannot load {EFFECT.name}: {detail}")
            self._effect = effect
        return self._effect

    def upload(self, layers: np.ndarray) -> None:
        """Replace the layers texture (uint8 RGBA, C-contiguous) with the worker's newest."""
        self._texture.upload(layers)

    @property
    def texture_size(self) -> tuple[int, int] | None:
        return self._texture.size

    def draw(self, frame: int, width: int, height: int, transparent: bool) -> bool:
        """Draw this frame's input texture composited with the layers; False while there are no layers."""
        effect = self._load()
        if self._texture.handle is None:
            return False
        # The layers are sampled as stored (sRGB-encoded, like the graph's numbers); `image`, the frame, is bound
        # decoded in linear light, as libobs draws a filter declaring OBS_SOURCE_SRGB.
        obs.gs_effect_set_texture(obs.gs_effect_get_param_by_name(effect, b"matte"), self._texture.handle)
        draw_texture(frame, width, height, effect, b"DrawTransparent" if transparent else b"Draw")
        return True

    def destroy(self) -> None:
        """Free the layers texture. The effect stays: libobs caches a file's effect by path and hands the same one
        to every filter (gs_effect_destroy ignores it); it frees it when the graphics subsystem shuts down."""
        self._texture.destroy()
        self._effect = None
