"""The filter's properties panel, built through libobs: every setting with its proper widget, plus the status.

Controls come in groups (Background, Edges, Speed & quality, Status). Only the controls the chosen background
uses are shown (OBS convention: a modified callback toggles visibility and asks for a refresh), and the FP16 switch
only where TensorRT can run (the reason it cannot is in the status). The status is an info text in OBS's normal
colour when all is well, the warning colour for warnings and red for errors.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from ..backgrounds import IMAGE_SUFFIXES, MODES
from ..engines import BACKENDS
from ..graph import MAX_FEATHER, MAX_GROW
from ..models import catalog
from . import libobs as obs
from . import settings as keys
from .status import ERROR, WARNING

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".gif")
STATUS, REFRESH = "status", "refresh"
GROUPS = {"background": "group_background", "edges": "group_edges", "speed": "group_speed",
          "status": "group_status"}
"""Property names of the groups: never setting keys (a normal group stores nothing)."""
_PER_MODE = {"color": keys.COLOR, "image": keys.IMAGE_PATH, "video": keys.VIDEO_PATH, "blur": keys.BLUR}
_LEVELS = {WARNING: obs.OBS_TEXT_INFO_WARNING, ERROR: obs.OBS_TEXT_INFO_ERROR}


def _b(value: str) -> bytes:
    return value.encode("utf-8")


def _file_filter(tr: Callable[[str], str], label: str, suffixes: tuple[str, ...]) -> bytes:
    """Qt file-dialog filter: 'Images (*.png *.jpg);;All files (*.*)'."""
    patterns = " ".join(f"*{s}" for s in suffixes)
    return _b(f"{tr(label)} ({patterns});;{tr('Files.All')} (*.*)")


@functools.cache
def tensorrt_can_run() -> bool:
    """Whether TensorRT can run on this machine (asked once per OBS process: the panel is rebuilt often)."""
    try:
        from ..engines.tensorrt import availability

        return not availability()[1]
    except Exception:  # a broken installation must not take the panel down
        return False


def show_mode_controls(props: int, mode: str) -> None:
    for m, key in _PER_MODE.items():
        prop = obs.obs_properties_get(props, _b(key))  # searches inside groups too
        if prop:
            obs.obs_property_set_visible(prop, m == mode)


@obs.ModifiedFn
def _background_modified(_priv, props, _prop, settings) -> bool:
    try:
        show_mode_controls(props, obs.text(obs.obs_data_get_string(settings, _b(keys.BACKGROUND))))
    except Exception:  # a UI callback must never raise into OBS
        return False
    return True


def _group(props: int, key: str, label: str) -> int:
    """A new normal (frameless-title) group added to `props`; returns the group's own obs_properties_t."""
    content = obs.obs_properties_create()
    obs.obs_properties_add_group(props, _b(GROUPS[key]), _b(label), obs.OBS_GROUP_NORMAL, content)
    return content


def build(tr: Callable[[str], str], mode: str, status: tuple[str, str] | None, on_refresh: obs.ClickedFn) -> int:
    """Create the obs_properties_t (OBS takes ownership). `status` is (text, level), None for the type's defaults."""
    props = obs.obs_properties_create()

    group = _group(props, "background", tr("Group.Background"))
    p = obs.obs_properties_add_list(group, _b(keys.BACKGROUND), _b(tr("Background")), obs.OBS_COMBO_TYPE_LIST,
                                    obs.OBS_COMBO_FORMAT_STRING)
    for m in MODES:
        obs.obs_property_list_add_string(p, _b(tr(f"Background.{m}")), _b(m))
    obs.obs_property_set_modified_callback2(p, _background_modified, None)

    obs.obs_properties_add_color(group, _b(keys.COLOR), _b(tr("Color")))
    obs.obs_properties_add_path(group, _b(keys.IMAGE_PATH), _b(tr("ImagePath")), obs.OBS_PATH_FILE,
                                _file_filter(tr, "Files.Images", IMAGE_SUFFIXES), None)
    obs.obs_properties_add_path(group, _b(keys.VIDEO_PATH), _b(tr("VideoPath")), obs.OBS_PATH_FILE,
                                _file_filter(tr, "Files.Videos", VIDEO_SUFFIXES), None)
    p = obs.obs_properties_add_int_slider(group, _b(keys.BLUR), _b(tr("Blur")), 0, 100, 1)
    obs.obs_property_int_set_suffix(p, b"%")
    show_mode_controls(props, mode)

    group = _group(props, "edges", tr("Group.Edges"))
    p = obs.obs_properties_add_int_slider(group, _b(keys.MATTE_GROW), _b(tr("MatteGrow")), -MAX_GROW, MAX_GROW, 1)
    obs.obs_property_int_set_suffix(p, b" px")
    obs.obs_property_set_long_description(p, _b(tr("MatteGrow.Tooltip")))
    p = obs.obs_properties_add_int_slider(group, _b(keys.FEATHER), _b(tr("Feather")), 0, MAX_FEATHER, 1)
    obs.obs_property_int_set_suffix(p, b" px")
    obs.obs_property_set_long_description(p, _b(tr("Feather.Tooltip")))

    group = _group(props, "speed", tr("Group.Speed"))
    _speed_controls(tr, group)
    p = obs.obs_properties_add_list(group, _b(keys.MODEL), _b(tr("Model")), obs.OBS_COMBO_TYPE_EDITABLE,
                                    obs.OBS_COMBO_FORMAT_STRING)
    for name in catalog():
        obs.obs_property_list_add_string(p, _b(name), _b(name))
    obs.obs_property_set_long_description(p, _b(tr("Model.Tooltip")))

    p = obs.obs_properties_add_list(group, _b(keys.BACKEND), _b(tr("Backend")), obs.OBS_COMBO_TYPE_LIST,
                                    obs.OBS_COMBO_FORMAT_STRING)
    for backend in BACKENDS:
        obs.obs_property_list_add_string(p, _b(tr(f"Backend.{backend}")), _b(backend))
    p = obs.obs_properties_add_float_slider(group, _b(keys.DOWNSAMPLE_RATIO), _b(tr("DownsampleRatio")), 0.0, 1.0,
                                            0.05)
    obs.obs_property_set_long_description(p, _b(tr("DownsampleRatio.Tooltip")))
    p = obs.obs_properties_add_bool(group, _b(keys.FP16), _b(tr("FP16")))
    obs.obs_property_set_visible(p, tensorrt_can_run())

    if status is not None:
        text, level = status
        group = _group(props, "status", tr("Group.Status"))
        p = obs.obs_properties_add_text(group, _b(STATUS), _b(tr("Status")), obs.OBS_TEXT_INFO)
        obs.obs_property_set_long_description(p, _b(text))
        obs.obs_property_text_set_info_type(p, _LEVELS.get(level, obs.OBS_TEXT_INFO_NORMAL))
        obs.obs_property_text_set_info_word_wrap(p, True)
        obs.obs_properties_add_button2(group, _b(REFRESH), _b(tr("Refresh")), on_refresh, None)
    return props


def _speed_controls(tr: Callable[[str], str], group: int) -> None:
    """Sync mode and matte refresh (live mode), at the top of Speed & quality."""
    p = obs.obs_properties_add_list(group, _b(keys.SYNC), _b(tr("Sync")), obs.OBS_COMBO_TYPE_LIST,
                                    obs.OBS_COMBO_FORMAT_STRING)
    for mode in keys.SYNC_MODES:
        obs.obs_property_list_add_string(p, _b(tr(f"Sync.{mode}")), _b(mode))
    obs.obs_property_set_long_description(p, _b(tr("Sync.Tooltip")))
    p = obs.obs_properties_add_list(group, _b(keys.MATTE_REFRESH), _b(tr("MatteRefresh")), obs.OBS_COMBO_TYPE_LIST,
                                    obs.OBS_COMBO_FORMAT_INT)
    for every in keys.REFRESH_EVERY:
        obs.obs_property_list_add_int(p, _b(tr(f"MatteRefresh.{every}")), every)
    p = obs.obs_properties_add_bool(group, _b(keys.SKIP_STILL), _b(tr("SkipStill")))
    obs.obs_property_set_long_description(p, _b(tr("SkipStill.Tooltip")))
