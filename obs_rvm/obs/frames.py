"""Pixels between the GPU and the worker: render the filter's input, read it back, draw keyed frames.

Every method runs with the graphics context entered (inside video_render, or between obs_enter_graphics and
obs_leave_graphics). The input (the source and the filters before this one) is rendered once per video frame into
the filter's own texture, which the read-back, the pass-through and the live mix all use: the filter never asks
libobs to render its target again (libobs' own filter helpers re-read the filter's parent, which a removal on another
thread clears). Read-back goes through rotating stage surfaces and maps the one staged in an earlier frame, as libobs
does for its own outputs: mapping the surface just staged would stall until the GPU caught up.
"""

from __future__ import annotations

import ctypes

import numpy as np

from . import libobs as obs

STAGES = 2
_ZERO = (ctypes.c_float * 4)()


class DynamicTexture:
    """A texture the CPU refills every keyed frame (uint8 RGBA), made again only when the size changes."""

    def __init__(self) -> None:
        self.handle: int | None = None
        self.size: tuple[int, int] | None = None

    def upload(self, rgba: np.ndarray) -> None:
        """Replace the pixels (C-contiguous uint8 RGBA [H, W, 4]): libobs copies width * 4 * height bytes from it."""
        if rgba.dtype != np.uint8 or rgba.ndim != 3 or rgba.shape[2] != 4 or not rgba.flags.c_contiguous:
            raise ValueError(f"a texture takes C-contiguous uint8 RGBA, not {rgba.dtype} {rgba.shape}")
        height, width = rgba.shape[:2]
        if self.size != (width, height):
            self.destroy()
            self.handle = obs.gs_texture_create(width, height, obs.GS_RGBA, 1, None, obs.GS_DYNAMIC)
            self.size = (width, height)
        obs.gs_texture_set_image(self.handle, rgba.ctypes.data, width * 4, False)

    def destroy(self) -> None:
        if self.handle is not None:
            obs.gs_texture_destroy(self.handle)
        self.handle = self.size = None


def draw_texture(texture: int, width: int, height: int, effect: int | None = None, technique: bytes = b"Draw",
                 straight_alpha: bool = False) -> None:
    """Draw a texture through an effect, as libobs draws a filter's texture (obs_source_process_filter_tech_end ->
    render_filter_tex): in linear light, which libobs forces for a filter declaring OBS_SOURCE_SRGB, with the
    caller's blend state for premultiplied textures. A straight-alpha texture blends its colour by its alpha."""
    effect = effect or obs.obs_get_base_effect(obs.OBS_EFFECT_DEFAULT)
    tech = obs.gs_effect_get_technique(effect, technique)
    image = obs.gs_effect_get_param_by_name(effect, b"image")
    linear = obs.gs_set_linear_srgb(True)
    previous = obs.gs_framebuffer_srgb_enabled()
    obs.gs_enable_framebuffer_srgb(True)
    obs.gs_effect_set_texture_srgb(image, texture)
    if straight_alpha:
        obs.gs_blend_state_push()
        obs.gs_blend_function_separate(obs.GS_BLEND_SRCALPHA, obs.GS_BLEND_INVSRCALPHA, obs.GS_BLEND_ONE,
                                       obs.GS_BLEND_INVSRCALPHA)
    passes = obs.gs_technique_begin(tech)
    for i in range(passes):
        if obs.gs_technique_begin_pass(tech, i):
            obs.gs_draw_sprite(texture, 0, width, height)
            obs.gs_technique_end_pass(tech)
    obs.gs_technique_end(tech)
    if straight_alpha:
        obs.gs_blend_state_pop()
    obs.gs_enable_framebuffer_srgb(previous)
    obs.gs_set_linear_srgb(linear)


class GpuFrames:
    """The graphics objects of one filter instance."""

    def __init__(self) -> None:
        self._texrender: int | None = None
        self._input: tuple[int, int, int] | None = None
        """(frame_time, width, height) of the frame in the input texture, None when it holds none."""
        self._stages: list[int | None] = [None] * STAGES
        self._staged: list[tuple[int, int, int] | None] = [None] * STAGES
        """Per stage surface: (width, height, frame_time) of the frame waiting in it, None once read."""
        self._next = 0
        self._stage_size: tuple[int, int] | None = None
        self._texture = DynamicTexture()
        self._ptr = ctypes.POINTER(ctypes.c_uint8)()
        self._linesize = ctypes.c_uint32()

    # -- input --------------------------------------------------------------------------------------------------

    def render_input(self, parent: int, target: int, width: int, height: int, frame_time: int) -> int | None:
        """The filter's input in this video frame as a texture (premultiplied alpha), rendered at its first request.

        As obs_source_process_filter_begin does: straight alpha in, premultiplied out, onto transparent black; a
        plain source is drawn by the default effect, anything else renders itself. `parent` and `target` are held.
        """
        if self._input == (frame_time, width, height):
            return obs.gs_texrender_get_texture(self._texrender)
        self._input = None
        if self._texrender is None:
            self._texrender = obs.gs_texrender_create(obs.GS_RGBA, obs.GS_ZS_NONE)
        obs.gs_texrender_reset(self._texrender)
        if not obs.gs_texrender_begin(self._texrender, width, height):
            return None
        obs.gs_blend_state_push()
        obs.gs_blend_function_separate(obs.GS_BLEND_SRCALPHA, obs.GS_BLEND_INVSRCALPHA, obs.GS_BLEND_ONE,
                                       obs.GS_BLEND_INVSRCALPHA)
        obs.gs_clear(obs.GS_CLEAR_COLOR, ctypes.byref(_ZERO), 0.0, 0)
        obs.gs_ortho(0.0, float(width), 0.0, float(height), -100.0, 100.0)
        flags = obs.obs_source_get_output_flags(parent)
        if target == parent and not flags & (obs.OBS_SOURCE_CUSTOM_DRAW | obs.OBS_SOURCE_ASYNC):
            obs.obs_source_default_render(target)  # a plain source draws only inside the default effect's technique
        else:
            obs.obs_source_video_render(target)
        obs.gs_blend_state_pop()
        obs.gs_texrender_end(self._texrender)
        self._input = (frame_time, width, height)
        return obs.gs_texrender_get_texture(self._texrender)

    def draw_input(self, width: int, height: int) -> None:
        """Pass the video through: draw this frame's input unchanged (nothing while there is none)."""
        texture = obs.gs_texrender_get_texture(self._texrender) if self._input else None
        if texture:
            draw_texture(texture, width, height)

    # -- read-back ----------------------------------------------------------------------------------------------

    def capture(self, width: int, height: int, frame_time: int) -> None:
        """Stage this frame's input (render_input first) for reading in the next frame."""
        if self._input != (frame_time, width, height):
            return
        if self._stage_size != (width, height):
            self._destroy_stages()
            self._stages = [obs.gs_stagesurface_create(width, height, obs.GS_RGBA) for _ in range(STAGES)]
            self._stage_size = (width, height)
        index = self._next
        self._next = (index + 1) % STAGES
        obs.gs_stage_texture(self._stages[index], obs.gs_texrender_get_texture(self._texrender))
        self._staged[index] = (width, height, frame_time)

    def read_previous(self) -> tuple[np.ndarray, int] | None:
        """A copy of the frame staged by the previous capture (never one staged in this call), with its frame time.

        Call it before `capture` in each new frame.
        """
        index = (self._next - 1) % STAGES
        staged, self._staged[index] = self._staged[index], None
        surface = self._stages[index]
        if staged is None or surface is None:
            return None
        width, height, frame_time = staged
        if not obs.gs_stagesurface_map(surface, ctypes.byref(self._ptr), ctypes.byref(self._linesize)):
            return None
        try:
            linesize = self._linesize.value
            rows = np.ctypeslib.as_array(self._ptr, shape=(height, linesize))
            out = rows[:, : width * 4].reshape(height, width, 4).copy()
        finally:
            obs.gs_stagesurface_unmap(surface)
        return out, frame_time

    # -- output -------------------------------------------------------------------------------------------------

    def upload(self, rgba: np.ndarray) -> None:
        """Replace the keyed texture's pixels (straight-alpha RGBA, C-contiguous)."""
        self._texture.upload(rgba)

    @property
    def texture_size(self) -> tuple[int, int] | None:
        return self._texture.size

    def draw(self, width: int, height: int) -> None:
        """Draw the keyed texture over whatever is below, alpha included (transparent mode reaches the scene)."""
        if self._texture.handle is not None:
            draw_texture(self._texture.handle, width, height, straight_alpha=True)

    # -- teardown -----------------------------------------------------------------------------------------------

    def _destroy_stages(self) -> None:
        for surface in self._stages:
            if surface is not None:
                obs.gs_stagesurface_destroy(surface)
        self._stages = [None] * STAGES
        self._staged = [None] * STAGES
        self._stage_size = None

    def destroy(self) -> None:
        self._destroy_stages()
        if self._texrender is not None:
            obs.gs_texrender_destroy(self._texrender)
            self._texrender = None
        self._input = None
        self._texture.destroy()
