"""The filter's properties panel, built through libobs: every setting with its proper widget, plus the status.

Only the controls the chosen background uses are shown (OBS convention: a modified callback toggles visibility
and asks for a refresh). The status is an info text whose level turns it yellow (CPU fallback) or red (error).
"""

from __future__ import annotations

from collections.abc import Callable

from ..backgrounds import IMAGE_SUFFIXES, MODES
from ..engines import BACKENDS
from ..models import catalog
from . import libobs as obs
from . import settings as keys
from .status import ERROR, WARNING

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".webm", ".avi", ".m4v", ".gif")
STATUS, REFRESH = "status", "refresh"
_PER_MODE = {"color": keys.COLOR, "image": keys.IMAGE_PATH, "video": keys.VIDEO_PATH, "blur": keys.BLUR}
_LEVELS = {WARNING: obs.OBS_TEXT_INFO_WARNING, ERROR: obs.OBS_TEXT_INFO_ERROR}


def _b(value: str) -> bytes:
    return value.encode("utf-8")


def _file_filter(tr: Callable[[str], str], label: str, suffixes: tuple[str, ...]) -> bytes:
    """Qt file-dialog filter: 'Images (*.png *.jpg);;All files (*.*)'."""
    patterns = " ".join(f"*{s}" for s in suffixes)
    return _b(f"{tr(label)} ({patterns});;{tr('Files.All')} (*.*)")


def show_mode_controls(props: int, mode: str) -> None:
    for m, key in _PER_MODE.items():
        prop = obs.obs_properties_get(props, _b(key))
        if prop:
            obs.obs_property_set_visible(prop, m == mode)


@obs.ModifiedFn
def _background_modified(_priv, props, _prop, settings) -> bool:
    try:
        show_mode_controls(props, obs.text(obs.obs_data_get_string(settings, _b(keys.BACKGROUND))))
    except Exception:  # a UI callback must never raise into OBS
        return False
    return True


def build(tr: Callable[[str], str], mode: str, status: tuple[str, str] | None, on_refresh: obs.ClickedFn) -> int:
    """Create the obs_properties_t (OBS takes ownership). `status` is (text, level), None for the type's defaults."""
    props = obs.obs_properties_create()

    p = obs.obs_properties_add_list(props, _b(keys.BACKGROUND), _b(tr("Background")), obs.OBS_COMBO_TYPE_LIST,
                                    obs.OBS_COMBO_FORMAT_STRING)
    for m in MODES:
        obs.obs_property_list_add_string(p, _b(tr(f"Background.{m}")), _b(m))
    obs.obs_property_set_modified_callback2(p, _background_modified, None)

    obs.obs_properties_add_color(props, _b(keys.COLOR), _b(tr("Color")))
    obs.obs_properties_add_path(props, _b(keys.IMAGE_PATH), _b(tr("ImagePath")), obs.OBS_PATH_FILE,
                                _file_filter(tr, "Files.Images", IMAGE_SUFFIXES), None)
    obs.obs_properties_add_path(props, _b(keys.VIDEO_PATH), _b(tr("VideoPath")), obs.OBS_PATH_FILE,
                                _file_filter(tr, "Files.Videos", VIDEO_SUFFIXES), None)
    p = obs.obs_properties_add_int_slider(props, _b(keys.BLUR), _b(tr("Blur")), 0, 100, 1)
    obs.obs_property_int_set_suffix(p, b"%")
    show_mode_controls(props, mode)

    p = obs.obs_properties_add_list(props, _b(keys.MODEL), _b(tr("Model")), obs.OBS_COMBO_TYPE_EDITABLE,
                                    obs.OBS_COMBO_FORMAT_STRING)
    for name in catalog():
        obs.obs_property_list_add_string(p, _b(name), _b(name))
    obs.obs_property_set_long_description(p, _b(tr("Model.Tooltip")))

    p = obs.obs_properties_add_list(props, _b(keys.BACKEND), _b(tr("Backend")), obs.OBS_COMBO_TYPE_LIST,
                                    obs.OBS_COMBO_FORMAT_STRING)
    for backend in BACKENDS:
        obs.obs_property_list_add_string(p, _b(tr(f"Backend.{backend}")), _b(backend))
    p = obs.obs_properties_add_float_slider(props, _b(keys.DOWNSAMPLE_RATIO), _b(tr("DownsampleRatio")), 0.0, 1.0,
                                            0.05)
    obs.obs_property_set_long_description(p, _b(tr("DownsampleRatio.Tooltip")))
    obs.obs_properties_add_bool(props, _b(keys.FP16), _b(tr("FP16")))

    if status is not None:
        text, level = status
        p = obs.obs_properties_add_text(props, _b(STATUS), _b(tr("Status")), obs.OBS_TEXT_INFO)
        obs.obs_property_set_long_description(p, _b(text))
        obs.obs_property_text_set_info_type(p, _LEVELS.get(level, obs.OBS_TEXT_INFO_NORMAL))
        obs.obs_property_text_set_info_word_wrap(p, True)
        obs.obs_properties_add_button2(props, _b(REFRESH), _b(tr("Refresh")), on_refresh, None)
    return props
