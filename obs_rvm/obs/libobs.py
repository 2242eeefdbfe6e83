"""ctypes bindings for the libobs calls the filter uses, declared once with their C types.

obspython (SWIG) cannot register a source type, and its gs_* wrappers reject Python buffers, so the filter talks
to libobs directly. Signatures follow libobs 29 (obs.h, obs-source.h, obs-properties.h, graphics/graphics.h);
struct obs_source_info only ever grows, so the struct below stops at the last callback the filter sets.
Pointers travel as plain ints (c_void_p); None is NULL.
"""

from __future__ import annotations

import contextlib
import ctypes
import sys
from collections.abc import Iterator
from ctypes import CFUNCTYPE, POINTER, c_bool, c_char_p, c_double, c_float, c_int, c_int64, c_size_t, c_uint8, c_uint32
from ctypes import c_uint64 as c_u64
from ctypes import c_void_p as P

# -- constants (values of the C enums and flags) ----------------------------------------------------------------

LOG_ERROR, LOG_WARNING, LOG_INFO, LOG_DEBUG = 100, 200, 300, 400

OBS_SOURCE_TYPE_FILTER = 1
OBS_SOURCE_VIDEO = 1 << 0
OBS_SOURCE_ASYNC = 1 << 2
OBS_SOURCE_CUSTOM_DRAW = 1 << 3
OBS_SOURCE_SRGB = 1 << 15

GS_RGBA = 3
GS_ZS_NONE = 0
GS_DYNAMIC = 1 << 1
GS_CLEAR_COLOR = 1 << 0
GS_BLEND_ZERO, GS_BLEND_ONE, GS_BLEND_SRCALPHA, GS_BLEND_INVSRCALPHA = 0, 1, 4, 5
OBS_EFFECT_DEFAULT = 0

OBS_COMBO_TYPE_EDITABLE, OBS_COMBO_TYPE_LIST = 1, 2
OBS_COMBO_FORMAT_INT, OBS_COMBO_FORMAT_STRING = 1, 3
OBS_PATH_FILE = 0
OBS_TEXT_INFO = 3
OBS_TEXT_INFO_NORMAL, OBS_TEXT_INFO_WARNING, OBS_TEXT_INFO_ERROR = 0, 1, 2
OBS_GROUP_NORMAL = 1

# -- callback types and struct obs_source_info -----------------------------------------------------------------

GetNameFn = CFUNCTYPE(P, P)  # const char *(*)(void *type_data): returns the address of a buffer we keep alive
CreateFn = CFUNCTYPE(P, P, P)  # void *(*)(obs_data_t *settings, obs_source_t *source)
DataFn = CFUNCTYPE(None, P)  # void (*)(void *data): destroy
GetDefaultsFn = CFUNCTYPE(None, P)  # void (*)(obs_data_t *settings)
GetPropertiesFn = CFUNCTYPE(P, P)  # obs_properties_t *(*)(void *data)
DataPtrFn = CFUNCTYPE(None, P, P)  # void (*)(void *data, X *): update, video_render, filter_remove
ModifiedFn = CFUNCTYPE(c_bool, P, P, P, P)  # obs_property_modified2_t(priv, props, property, settings)
ClickedFn = CFUNCTYPE(c_bool, P, P, P)  # obs_property_clicked_t(props, property, data)


class SourceInfo(ctypes.Structure):
    """struct obs_source_info up to filter_remove (offset 208 on 64-bit): libobs zero-fills the rest."""

    _fields_ = [
        ("id", c_char_p),
        ("type", c_int),
        ("output_flags", c_uint32),
        ("get_name", GetNameFn),
        ("create", CreateFn),
        ("destroy", DataFn),
        ("get_width", P),
        ("get_height", P),
        ("get_defaults", GetDefaultsFn),
        ("get_properties", GetPropertiesFn),
        ("update", DataPtrFn),
        ("activate", P),
        ("deactivate", P),
        ("show", P),
        ("hide", P),
        ("video_tick", P),
        ("video_render", DataPtrFn),
        ("filter_video", P),
        ("filter_audio", P),
        ("enum_active_sources", P),
        ("save", P),
        ("load", P),
        ("mouse_click", P),
        ("mouse_move", P),
        ("mouse_wheel", P),
        ("focus", P),
        ("key_click", P),
        ("filter_remove", DataPtrFn),
    ]


# -- the library ------------------------------------------------------------------------------------------------


def _load() -> ctypes.CDLL:
    """libobs as OBS itself loaded it: the running process first, then the platform's library name."""
    if sys.platform != "win32":
        process = ctypes.CDLL(None)
        if hasattr(process, "obs_register_source_s"):
            return process
    names = {"win32": ["obs.dll"], "darwin": ["libobs.framework/libobs", "libobs.dylib"]}
    names = names.get(sys.platform, ["libobs.so.0", "libobs.so"])
    errors = []
    for name in names:
        try:
            return ctypes.CDLL(name)
        except OSError as e:
            errors.append(str(e))
    raise OSError(f"libobs not found ({'; '.join(errors)}): this module only works inside OBS Studio")


_lib = _load()


def _fn(name: str, restype, *argtypes):
    f = getattr(_lib, name)
    f.restype = restype
    f.argtypes = list(argtypes)
    return f


U8P = POINTER(c_uint8)

# core
blog = _fn("blog", None, c_int, c_char_p)  # variadic in C: only ever called with a pre-escaped message
obs_register_source_s = _fn("obs_register_source_s", None, POINTER(SourceInfo), c_size_t)
obs_get_locale = _fn("obs_get_locale", c_char_p)
obs_get_video_frame_time = _fn("obs_get_video_frame_time", c_u64)
obs_get_lagged_frames = _fn("obs_get_lagged_frames", c_uint32)
obs_enter_graphics = _fn("obs_enter_graphics", None)
obs_leave_graphics = _fn("obs_leave_graphics", None)
obs_get_base_effect = _fn("obs_get_base_effect", P, c_int)
bfree = _fn("bfree", None, P)

# sources
obs_source_get_name = _fn("obs_source_get_name", c_char_p, P)
obs_filter_get_parent = _fn("obs_filter_get_parent", P, P)
obs_filter_get_target = _fn("obs_filter_get_target", P, P)
obs_source_get_base_width = _fn("obs_source_get_base_width", c_uint32, P)
obs_source_get_base_height = _fn("obs_source_get_base_height", c_uint32, P)
obs_source_get_output_flags = _fn("obs_source_get_output_flags", c_uint32, P)
obs_source_default_render = _fn("obs_source_default_render", None, P)
obs_source_video_render = _fn("obs_source_video_render", None, P)
obs_source_get_ref = _fn("obs_source_get_ref", P, P)  # NULL once the source is being destroyed
obs_source_release = _fn("obs_source_release", None, P)
obs_source_update_properties = _fn("obs_source_update_properties", None, P)

# settings (obs_data_t)
obs_data_get_string = _fn("obs_data_get_string", c_char_p, P, c_char_p)
obs_data_get_int = _fn("obs_data_get_int", c_int64, P, c_char_p)
obs_data_get_double = _fn("obs_data_get_double", c_double, P, c_char_p)
obs_data_get_bool = _fn("obs_data_get_bool", c_bool, P, c_char_p)
obs_data_set_default_string = _fn("obs_data_set_default_string", None, P, c_char_p, c_char_p)
obs_data_set_default_int = _fn("obs_data_set_default_int", None, P, c_char_p, c_int64)
obs_data_set_default_double = _fn("obs_data_set_default_double", None, P, c_char_p, c_double)
obs_data_set_default_bool = _fn("obs_data_set_default_bool", None, P, c_char_p, c_bool)

# properties
obs_properties_create = _fn("obs_properties_create", P)
obs_properties_get = _fn("obs_properties_get", P, P, c_char_p)
obs_properties_add_list = _fn("obs_properties_add_list", P, P, c_char_p, c_char_p, c_int, c_int)
obs_property_list_add_string = _fn("obs_property_list_add_string", c_size_t, P, c_char_p, c_char_p)
obs_property_list_add_int = _fn("obs_property_list_add_int", c_size_t, P, c_char_p, c_int64)
obs_properties_add_color = _fn("obs_properties_add_color", P, P, c_char_p, c_char_p)
obs_properties_add_path = _fn("obs_properties_add_path", P, P, c_char_p, c_char_p, c_int, c_char_p, c_char_p)
obs_properties_add_int_slider = _fn("obs_properties_add_int_slider", P, P, c_char_p, c_char_p, c_int, c_int, c_int)
obs_properties_add_float_slider = _fn("obs_properties_add_float_slider", P, P, c_char_p, c_char_p, c_double,
                                      c_double, c_double)
obs_properties_add_bool = _fn("obs_properties_add_bool", P, P, c_char_p, c_char_p)
obs_properties_add_text = _fn("obs_properties_add_text", P, P, c_char_p, c_char_p, c_int)
obs_properties_add_group = _fn("obs_properties_add_group", P, P, c_char_p, c_char_p, c_int, P)
obs_properties_add_button2 = _fn("obs_properties_add_button2", P, P, c_char_p, c_char_p, ClickedFn, P)
obs_property_set_modified_callback2 = _fn("obs_property_set_modified_callback2", None, P, ModifiedFn, P)
obs_property_set_visible = _fn("obs_property_set_visible", None, P, c_bool)
obs_property_set_long_description = _fn("obs_property_set_long_description", None, P, c_char_p)
obs_property_text_set_info_type = _fn("obs_property_text_set_info_type", None, P, c_int)
obs_property_text_set_info_word_wrap = _fn("obs_property_text_set_info_word_wrap", None, P, c_bool)
obs_property_float_set_suffix = _fn("obs_property_float_set_suffix", None, P, c_char_p)
obs_property_int_set_suffix = _fn("obs_property_int_set_suffix", None, P, c_char_p)

# graphics (only with the graphics context entered)
gs_texrender_create = _fn("gs_texrender_create", P, c_int, c_int)
gs_texrender_destroy = _fn("gs_texrender_destroy", None, P)
gs_texrender_reset = _fn("gs_texrender_reset", None, P)
gs_texrender_begin = _fn("gs_texrender_begin", c_bool, P, c_uint32, c_uint32)
gs_texrender_end = _fn("gs_texrender_end", None, P)
gs_texrender_get_texture = _fn("gs_texrender_get_texture", P, P)
gs_stagesurface_create = _fn("gs_stagesurface_create", P, c_uint32, c_uint32, c_int)
gs_stagesurface_destroy = _fn("gs_stagesurface_destroy", None, P)
gs_stage_texture = _fn("gs_stage_texture", None, P, P)
gs_stagesurface_map = _fn("gs_stagesurface_map", c_bool, P, POINTER(U8P), POINTER(c_uint32))
gs_stagesurface_unmap = _fn("gs_stagesurface_unmap", None, P)
gs_texture_create = _fn("gs_texture_create", P, c_uint32, c_uint32, c_int, c_uint32, P, c_uint32)
gs_texture_destroy = _fn("gs_texture_destroy", None, P)
gs_texture_set_image = _fn("gs_texture_set_image", None, P, P, c_uint32, c_bool)
gs_blend_state_push = _fn("gs_blend_state_push", None)
gs_blend_state_pop = _fn("gs_blend_state_pop", None)
gs_blend_function_separate = _fn("gs_blend_function_separate", None, c_int, c_int, c_int, c_int)
gs_clear = _fn("gs_clear", None, c_uint32, POINTER(c_float * 4), c_float, c_uint8)
gs_ortho = _fn("gs_ortho", None, c_float, c_float, c_float, c_float, c_float, c_float)
gs_effect_create_from_file = _fn("gs_effect_create_from_file", P, c_char_p, POINTER(P))  # error: bmalloc'd
gs_effect_get_param_by_name = _fn("gs_effect_get_param_by_name", P, P, c_char_p)
gs_effect_get_technique = _fn("gs_effect_get_technique", P, P, c_char_p)
gs_effect_set_texture = _fn("gs_effect_set_texture", None, P, P)
gs_effect_set_texture_srgb = _fn("gs_effect_set_texture_srgb", None, P, P)
gs_technique_begin = _fn("gs_technique_begin", c_size_t, P)
gs_technique_begin_pass = _fn("gs_technique_begin_pass", c_bool, P, c_size_t)
gs_technique_end_pass = _fn("gs_technique_end_pass", None, P)
gs_technique_end = _fn("gs_technique_end", None, P)
gs_draw_sprite = _fn("gs_draw_sprite", None, P, c_uint32, c_uint32, c_uint32)
gs_enable_framebuffer_srgb = _fn("gs_enable_framebuffer_srgb", None, c_bool)
gs_framebuffer_srgb_enabled = _fn("gs_framebuffer_srgb_enabled", c_bool)
gs_set_linear_srgb = _fn("gs_set_linear_srgb", c_bool, c_bool)  # returns the previous value


@contextlib.contextmanager
def filter_sources(filter_source: int) -> Iterator[tuple[int, int] | None]:
    """The filter's parent and target, read once and held by strong references while the caller draws; None while
    the filter is not attached to a source.

    obs_source_filter_remove clears a filter's parent and target on another thread while the graphics thread may be
    drawing it, and libobs' own filter helpers (obs_source_skip_video_filter, obs_source_process_filter_begin) read
    them again inside without holding them: a filter that hands libobs only its own pointer can crash OBS.
    """
    parent = obs_source_get_ref(obs_filter_get_parent(filter_source))
    target = obs_source_get_ref(obs_filter_get_target(filter_source))
    try:
        yield (parent, target) if parent and target else None
    finally:
        # The target may be a filter removed meanwhile: ours can be its last reference (it is destroyed here, as
        # libobs' own render loop does with a filter it holds). The parent is drawing us: its caller holds it.
        obs_source_release(target)
        obs_source_release(parent)


def log(level: int, message: str) -> None:
    """One line in the OBS log under the project's prefix; blog is printf-like, so '%' is escaped."""
    blog(level, ("[obs-rvm] " + message).replace("%", "%%").encode("utf-8", "replace"))


def text(value: bytes | None) -> str:
    return value.decode("utf-8", "replace") if value else ""
