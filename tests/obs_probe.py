"""Test helper loaded into OBS beside obs_script.py (obs-websocket cannot read a filter's properties panel).

Twice a second it writes $OBS_RVM_PROBE_DIR/properties.json: for every source with a filter named
$OBS_RVM_PROBE_FILTER (default "AI"), what OBS's properties panel would show for it, as libobs builds it.
"""

import json
import os

import obspython as obs

NAMES = ("background", "color", "image_path", "video_path", "blur", "model", "backend", "downsample_ratio", "fp16",
         "status", "refresh", "matte_grow", "feather", "sync", "refresh_every", "skip_still")
GROUPS = ("group_background", "group_edges", "group_speed", "group_status")
OUT = os.environ.get("OBS_RVM_PROBE_DIR", "")
FILTER = os.environ.get("OBS_RVM_PROBE_FILTER", "AI")
refreshes: dict[str, int] = {}
"""Per source: how often its filter asked an open properties panel to reload (the "update_properties" signal)."""


def watch(name: str, flt) -> None:
    if name in refreshes:
        return
    refreshes[name] = 0

    def on_update(_calldata) -> None:
        refreshes[name] += 1

    obs.signal_handler_connect(obs.obs_source_get_signal_handler(flt), "update_properties", on_update)


def describe(p) -> dict:
    kind = obs.obs_property_get_type(p)
    info = {"type": kind, "visible": obs.obs_property_visible(p), "description": obs.obs_property_description(p),
            "long_description": obs.obs_property_long_description(p)}
    if kind == obs.OBS_PROPERTY_LIST:
        info["combo"] = obs.obs_property_list_type(p)
        info["items"] = [[obs.obs_property_list_item_name(p, i), obs.obs_property_list_item_string(p, i)]
                         for i in range(obs.obs_property_list_item_count(p))]
    elif kind == obs.OBS_PROPERTY_TEXT:
        info["text_type"] = obs.obs_property_text_type(p)
        info["info_type"] = obs.obs_property_text_info_type(p)
    elif kind == obs.OBS_PROPERTY_PATH:
        info["path_type"] = obs.obs_property_path_type(p)
        info["filter"] = obs.obs_property_path_filter(p)
    elif kind == obs.OBS_PROPERTY_INT:
        info["range"] = [obs.obs_property_int_min(p), obs.obs_property_int_max(p), obs.obs_property_int_step(p)]
        info["slider"] = obs.obs_property_int_type(p) == obs.OBS_NUMBER_SLIDER
    elif kind == obs.OBS_PROPERTY_FLOAT:
        info["range"] = [obs.obs_property_float_min(p), obs.obs_property_float_max(p), obs.obs_property_float_step(p)]
        info["slider"] = obs.obs_property_float_type(p) == obs.OBS_NUMBER_SLIDER
    elif kind == obs.OBS_PROPERTY_GROUP:
        content = obs.obs_property_group_content(p)
        info["group_type"] = obs.obs_property_group_type(p)
        info["contains"] = [name for name in NAMES if obs.obs_properties_get(content, name) is not None]
    return info


def dump() -> None:
    result = {}
    sources = obs.obs_enum_sources()
    for source in sources or []:
        flt = obs.obs_source_get_filter_by_name(source, FILTER)
        if flt is None:
            continue
        name = obs.obs_source_get_name(source)
        watch(name, flt)
        props = obs.obs_source_properties(flt)
        entry = {"refreshes": refreshes[name]}
        for key in NAMES + GROUPS:
            p = obs.obs_properties_get(props, key)
            entry[key] = describe(p) if p is not None else None
        obs.obs_properties_destroy(props)
        obs.obs_source_release(flt)
        result[name] = entry
    obs.source_list_release(sources)
    tmp = os.path.join(OUT, "properties.json.tmp")
    with open(tmp, "w") as f:
        json.dump(result, f)
    os.replace(tmp, os.path.join(OUT, "properties.json"))


def script_load(settings):
    if OUT:
        obs.timer_add(dump, 500)


def script_unload():
    obs.timer_remove(dump)
