"""The "AI Background" filter in a real OBS Studio (Debian's 29.0.2) under Xvfb, driven over obs-websocket 5,
with the real model: pixels from GetSourceScreenshot against the pipeline's own output on the same frame, every
background mode, the properties panel, errors, render-thread cost, and the whole life cycle to a clean exit.

The tests of one OBS instance share it and run in file order (each leaves the filter as the next expects).
"""

from __future__ import annotations

import re
import shutil
import site
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from obs_harness import (
    Obs,
    ObsConfig,
    ai_filter,
    color_input,
    image_input,
    media_input,
    reference,
    similar,
)

from obs_rvm.backgrounds import MODES, cover
from obs_rvm.engines import BACKENDS, plan
from obs_rvm.engines.tensorrt import availability
from obs_rvm.models import fallback_note
from obs_rvm.obs.settings import rgb_to_obs_color
from obs_rvm.video_io import VideoSource

from paths import ASTRONAUT, CLIPS

pytestmark = [
    pytest.mark.obs,
    pytest.mark.skipif(not (shutil.which("obs") and shutil.which("Xvfb")),
                       reason="needs OBS Studio and Xvfb: apt-get install obs-studio xvfb"),
]

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "obs_rvm" / "obs_script.py"
PROBE = Path(__file__).with_name("obs_probe.py")
SITE_PACKAGES = [Path(p) for p in site.getsitepackages()]
"""This test environment's own site-packages: OBS's Python runs the filter with them (same Python version)."""
ENVIRONMENT_JSON = {"site_packages": [str(p) for p in SITE_PACKAGES], "source": str(REPO)}
"""The installer's environment.json for this checkout: how OBS's Python finds the dependencies and the package."""
BLUE, YELLOW, RED = (0, 0, 255), (255, 220, 0), (255, 0, 0)
CLIP = CLIPS / "help.mkv"
BACKGROUND_VIDEO = CLIPS / "thanks.mkv"
OBS_PROPERTY = {"bool": 1, "int": 2, "float": 3, "text": 4, "path": 5, "list": 6, "color": 7, "button": 8,
                "group": 12}
OBS_TEXT_INFO, OBS_TEXT_INFO_NORMAL, OBS_TEXT_INFO_ERROR, OBS_COMBO_TYPE_EDITABLE = 3, 0, 2, 1
RENDER_SKIP_SHARE = 0.1
"""Frames OBS skips with the filter keying on the CPU, over those it skips without, at most this share of what a
render thread waiting for each inference would skip. The rest is the filter's own drawing and read-back competing with
inference for the cores: on software OpenGL on a shared 2-core machine 0-9 of 600 frames (up to 16 in a burst of
load), where waiting would skip some 500 (half as fast a host: more of both)."""


def rgba(path: Path, size: tuple[int, int] | None = None) -> np.ndarray:
    image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGBA)
    return image if size is None else cv2.resize(image, size, interpolation=cv2.INTER_AREA)


def corners(image: np.ndarray, size: int = 8) -> list[np.ndarray]:
    return [image[:size, :size], image[:size, -size:], image[-size:, :size], image[-size:, -size:]]


def all_near(image: np.ndarray, rgb: tuple[int, int, int], tol: float = 4) -> bool:
    """Each corner patch averages to this colour (RVM may leave a few per cent of alpha on a stray pixel)."""
    return all(np.abs(c[..., :3].reshape(-1, 3).mean(0) - rgb).max() <= tol for c in corners(image))


def transparent_corners(image: np.ndarray) -> bool:
    """The background came out transparent: the corners are (all but) fully transparent in a PNG screenshot.

    RVM leaves a pixel or two at a few per cent of alpha now and then (the astronaut's suit is near one corner)."""
    return all(c[..., 3].mean() <= 4 for c in corners(image))


def count(pattern: str, text: str) -> int:
    return len(re.findall(pattern, text))


def stats(log: str, label: str) -> list[dict[str, str]]:
    """The filter's periodic stats lines (OBS_RVM_STATS_INTERVAL) as dicts."""
    lines = re.findall(rf"stats AI Background {re.escape(label)}: (.*)", log)
    return [dict(kv.split("=", 1) for kv in line.split()) for line in lines]


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("media")
    quads = np.zeros((600, 800, 3), np.uint8)  # BGR quadrants: red, green / blue, white
    quads[:300, :400], quads[:300, 400:], quads[300:, :400], quads[300:, 400:] = (0, 0, 255), (0, 255, 0), \
        (255, 0, 0), (255, 255, 255)
    cv2.imwrite(str(folder / "quadrants.png"), quads)
    cv2.imwrite(str(folder / "small.png"), cv2.resize(cv2.imread(str(ASTRONAUT)), (256, 192)))
    return {"quadrants": folder / "quadrants.png", "small": folder / "small.png"}


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Obs:
    """One OBS for the picture tests. Dependencies come through the installer's environment.json."""
    work = tmp_path_factory.mktemp("obs-pictures")
    config = ObsConfig(
        script=SCRIPT,
        environment_json=ENVIRONMENT_JSON,
        inputs=[  # bottom to top: Person over a red backdrop, the others underneath (drawn, though hidden)
            # In sync: the render-skip test measures whether rendering waits for inference; live video's own
            # per-frame mix on software OpenGL is bounded in test_obs_live.py.
            media_input("Clip", CLIP, [ai_filter("AI", enabled=False, background="blur", sync="sync", backend="cpu")]),
            image_input("Missing", ASTRONAUT, [ai_filter("AI", background="color", model="/nonexistent/rvm.onnx")]),
            color_input("Backdrop", RED, (640, 480)),
            image_input("Person", ASTRONAUT, [ai_filter("AI", background="color", color=rgb_to_obs_color(BLUE))]),
        ],
        extra_scripts=[PROBE],
        env={"OBS_RVM_STATS_INTERVAL": "1", "OBS_RVM_PROBE_DIR": str(work)},
    )
    with Obs(config, work) as o:
        yield o


def test_script_registers_the_filter_once(pictures):
    log = pictures.wait_log(r"AI Background filter registered").string
    assert count(r"AI Background filter registered", log) == 1
    assert "already exists" not in log and "'obs_rvm_ai_background' not found" not in log
    assert "AI Background is not available" not in log  # the dependencies were found through environment.json


def test_color_background_keeps_the_person(pictures):
    c = pictures.client
    c.set_source_filter_enabled("Person", "AI", False)
    frame = pictures.wait_for(lambda: (s := pictures.screenshot("Person")) is not None and not all_near(s, BLUE)
                              and s, 30, "the unfiltered picture")
    assert np.abs(frame.astype(int) - rgba(ASTRONAUT)).max() <= 1  # the filter is handed exactly this frame
    c.set_source_filter_enabled("Person", "AI", True)
    expected = reference(frame, background="color", color=rgb_to_obs_color(BLUE))
    shot = pictures.wait_for(lambda: (s := pictures.screenshot("Person")) is not None and similar(s, expected)
                             and s, 90, "keyed output matching the pipeline's")
    assert all_near(shot, BLUE)  # background replaced by the colour...
    middle = (slice(200, 320), slice(200, 320))  # ...and the face and suit (the person) kept as they were
    assert np.abs(shot[middle][..., :3].astype(int) - frame[middle][..., :3]).mean() < 12


def test_offline_the_filter_keys_with_the_bundled_model_and_says_so_once(pictures):
    """No network for downloads and nothing downloaded (conftest): the filter at its default model keys with the
    bundled one (the test above compared its pixels with the pipeline's) and the OBS log says so once."""
    log = pictures.wait_log(r"'AI' on 'Person': keying \d+x\d+ with .*, model mobilenetv3-web").string
    assert count(re.escape(fallback_note()), log) == 1, log[-3000:]


def test_every_background_mode_through_websocket(pictures, media):
    frame = rgba(ASTRONAUT)
    source = VideoSource(BACKGROUND_VIDEO)
    video = [cover(f[..., :3], 512, 512) for f in source]
    source.close()
    checks = {
        "transparent": ({}, lambda s, ref: similar(s, ref, slice(3, 4)) and transparent_corners(s)),
        "color": ({"color": rgb_to_obs_color(YELLOW)}, lambda s, ref: similar(s, ref) and all_near(s, YELLOW)),
        "image": ({"image_path": str(media["quadrants"])}, lambda s, ref: similar(s, ref) and _quadrant_corners(s)),
        "video": ({"video_path": str(BACKGROUND_VIDEO)}, lambda s, ref: _matches_a_video_frame(s, video)),
        "blur": ({"blur": 80}, lambda s, ref: similar(s, ref)),
    }
    assert set(checks) == set(MODES)
    for mode, (extra, check) in checks.items():
        values = {"background": mode, **extra}
        expected = reference(frame, **values) if mode != "video" else None
        pictures.client.set_source_filter_settings("Person", "AI", values, True)
        pictures.wait_for(lambda check=check, expected=expected: check(pictures.screenshot("Person"), expected), 90,
                          f"'{mode}' in the screenshot")
        if mode == "transparent":  # the alpha reaches the scene: the backdrop shows where the background was
            scene = pictures.screenshot("Scene")
            assert all_near(scene[:64, :64], RED) and all_near(scene[:64, 448:512], RED)
            assert not all_near(scene[200:320, 200:320], RED)  # and the person covers it


def test_engine_settings_rebuild_live(pictures):
    mark = len(pictures.log_text())
    pictures.client.set_source_filter_settings("Person", "AI", {"downsample_ratio": 0.25}, True)
    pictures.wait_log(r"'AI' on 'Person': keying 512x512 with .* downsample ratio 0\.25", 90, after=mark)


def _quadrant_corners(shot: np.ndarray) -> bool:
    """The picture covers the frame: red, green, blue and white quadrants show in the four corners."""
    expected = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 255)]
    return all(all_near(c, e) for c, e in zip(corners(shot, 16), expected, strict=True))


def _matches_a_video_frame(shot: np.ndarray, video: list[np.ndarray]) -> bool:
    """Every corner shows the same frame of the background video (the person covers none of them)."""
    patches = corners(shot, 24)
    for frame in video:
        if all(np.abs(p[..., :3].astype(int) - f).mean() <= 4 for p, f in zip(patches, corners(frame, 24),
                                                                                   strict=True)):
            return True
    return False


def test_source_resolution_change(pictures, media):
    c = pictures.client
    values = {"background": "color", "color": rgb_to_obs_color(BLUE), "downsample_ratio": 0.0}
    c.set_source_filter_settings("Person", "AI", values, True)
    c.set_input_settings("Person", {"file": str(media["small"])}, True)
    expected = reference(rgba(media["small"]), **values)
    pictures.wait_for(lambda: similar(pictures.screenshot("Person"), expected), 90, "keyed output at the new size")
    c.set_input_settings("Person", {"file": str(ASTRONAUT)}, True)
    pictures.wait_for(lambda: (s := pictures.screenshot("Person")).shape[:2] == (512, 512) and all_near(s, BLUE), 90,
                      "keyed output back at 512x512")


def test_properties_panel(pictures, media):
    import json

    path = pictures.workdir / "properties.json"

    def panel(start: float, size: str):
        try:
            if path.stat().st_mtime < start:  # rewritten twice a second: an older one may show an older size
                return None
            data = json.loads(path.read_text())
        except (OSError, ValueError):
            return None
        text = ((data.get("Person") or {}).get("status") or {}).get("long_description") or ""
        return data if "fps" in text and size in text else None

    def settled(size: str, what: str, refreshed_after: int = -1):
        """The panel showing `size`, once the filter has asked an open panel to reload since `refreshed_after`."""
        start = time.time()
        return pictures.wait_for(lambda: (d := panel(start, size)) and d["Person"]["refreshes"] > refreshed_after
                                 and d, 60, what)

    values = {"background": "color", "color": rgb_to_obs_color(BLUE), "downsample_ratio": 0.0}
    pictures.client.set_source_filter_settings("Person", "AI", values, True)
    before = settled("512x512", "a running status")["Person"]["refreshes"]
    # A new size is a new status: an open panel must not keep showing the old one (changes within a second of each
    # other are coalesced into one reload).
    pictures.client.set_input_settings("Person", {"file": str(media["small"])}, True)
    middle = settled("256x192", "a reload at the new size", before)["Person"]["refreshes"]
    pictures.client.set_input_settings("Person", {"file": str(ASTRONAUT)}, True)
    data = settled("512x512", "a reload back at 512x512", middle)
    p = data["Person"]
    assert p["background"]["type"] == OBS_PROPERTY["list"]
    assert [value for _, value in p["background"]["items"]] == list(MODES)
    assert p["color"]["type"] == OBS_PROPERTY["color"] and p["color"]["visible"]  # colour mode: only its control
    assert not p["image_path"]["visible"] and not p["video_path"]["visible"] and not p["blur"]["visible"]
    assert p["image_path"]["type"] == OBS_PROPERTY["path"] and "*.png" in p["image_path"]["filter"]
    assert p["video_path"]["type"] == OBS_PROPERTY["path"] and "*.mp4" in p["video_path"]["filter"]
    assert p["blur"]["type"] == OBS_PROPERTY["int"] and p["blur"]["slider"] and p["blur"]["range"] == [0, 100, 1]
    assert p["model"]["type"] == OBS_PROPERTY["list"] and p["model"]["combo"] == OBS_COMBO_TYPE_EDITABLE
    assert {"mobilenetv3", "mobilenetv3-web"} <= {value for _, value in p["model"]["items"]}
    assert [value for _, value in p["backend"]["items"]] == list(BACKENDS)
    assert p["downsample_ratio"]["type"] == OBS_PROPERTY["float"] and p["downsample_ratio"]["slider"]
    assert p["downsample_ratio"]["range"][:2] == [0.0, 1.0]
    assert p["fp16"]["type"] == OBS_PROPERTY["bool"] and p["refresh"]["type"] == OBS_PROPERTY["button"]
    status = p["status"]
    assert status["type"] == OBS_PROPERTY["text"] and status["text_type"] == OBS_TEXT_INFO
    text = status["long_description"]
    # What runs is what the detection code picks on this machine (OBS runs this checkout with these packages).
    candidates, skipped = plan("auto")
    first = candidates[0]
    parts = [f"Running: {first.backend} on {'CPU' if not first.gpu else ''}", "mobilenetv3-web", "512x512", "fps",
             "Latency:", "Render thread:", *skipped]
    if not first.gpu:
        parts.append("Video: live video over the newest matte (automatic: the CPU cannot key every frame)")
    for part in parts:
        assert part in text, f"{part!r} missing from the status:\n{text}"
    assert status["info_type"] == OBS_TEXT_INFO_NORMAL, "a healthy status is drawn in OBS's normal text colour"
    assert "Last step" not in text
    tensorrt_reasons = availability()[1]
    assert p["fp16"]["visible"] == (not tensorrt_reasons), "the FP16 switch is shown where TensorRT can run"
    if tensorrt_reasons:
        assert "TensorRT skipped" in text, "the reason FP16 is hidden stays in the status"
    groups = {name: p[name] for name in ("group_background", "group_edges", "group_speed", "group_status")}
    assert all(g is not None and g["type"] == OBS_PROPERTY["group"] for g in groups.values()), groups
    assert groups["group_background"]["contains"] == ["background", "color", "image_path", "video_path", "blur"]
    assert groups["group_edges"]["contains"] == ["matte_grow", "feather"]
    assert {"model", "backend", "downsample_ratio", "fp16"} <= set(groups["group_speed"]["contains"])
    assert groups["group_status"]["contains"] == ["status", "refresh"]
    for key in ("matte_grow", "feather"):
        assert p[key]["type"] == OBS_PROPERTY["int"] and p[key]["slider"]
    assert p["matte_grow"]["range"] == [-10, 10, 1] and p["feather"]["range"] == [0, 10, 1]
    missing = data["Missing"]["status"]
    assert missing["info_type"] == OBS_TEXT_INFO_ERROR
    assert "model file not found: /nonexistent/rvm.onnx" in missing["long_description"]


def test_missing_model_is_logged_once_and_the_video_passes_through(pictures):
    time.sleep(2)  # many frames after the first failure
    log = pictures.log_text()
    assert count(r"AI Background 'AI' on 'Missing': model file not found: /nonexistent/rvm\.onnx", log) == 1
    assert np.abs(pictures.screenshot("Missing").astype(int) - rgba(ASTRONAUT)).max() <= 1


def test_render_thread_never_waits_for_inference(pictures):
    """20 s with the filter keying a 640x480 clip on the CPU against 20 s without, in one run. Short blocks,
    alternated, so a burst of load from elsewhere on the machine falls on both sides alike."""
    c = pictures.client
    for name in ("Person", "Missing", "Backdrop"):  # only the clip is drawn: one filter at work
        c.set_scene_item_enabled("Scene", c.get_scene_item_id("Scene", name).scene_item_id, False)
    mark = len(pictures.log_text())
    c.set_source_filter_enabled("Clip", "AI", True)
    pictures.wait_log(r"AI Background 'AI' on 'Clip': keying 640x480", 90, after=mark)
    skipped = {False: 0, True: 0}
    total = {False: 0, True: 0}
    keyed_before = _keyed(pictures)
    for enabled in (False, True) * 8:
        c.set_source_filter_enabled("Clip", "AI", enabled)
        time.sleep(0.5)  # let the switch settle
        before = c.get_stats()
        time.sleep(2.5)
        after = c.get_stats()
        skipped[enabled] += after.render_skipped_frames - before.render_skipped_frames
        total[enabled] += after.render_total_frames - before.render_total_frames
    frames_keyed = _keyed(pictures) - keyed_before
    line = stats(pictures.log_text(), "'AI' on 'Clip'")[-1]
    print(f"\nrender skipped: {skipped[True]}/{total[True]} with the filter, {skipped[False]}/{total[False]} without; "
          f"keyed {frames_keyed} frames; last stats: {line}")
    assert frames_keyed >= 20, "the filter was not keying during the measurement"
    assert total[True] >= 500 and total[False] >= 500
    # Both bounds scale with this machine's speed (one inference, measured in this run), so they hold on a slower
    # or faster machine alike. First the claim itself: waiting, every keyed frame's call (over 2% of them) would
    # last an inference, and so would the 99th percentile.
    inference_ms = float(line["inference_ms"])
    assert float(line["render_p99_ms"]) < inference_ms, "the render thread waited for inference"
    # Then what a user sees: a call lasting an inference makes OBS skip about inference / interval frames.
    waiting_would_skip = frames_keyed * inference_ms / (1000 / pictures.config.fps)
    assert skipped[True] - skipped[False] <= RENDER_SKIP_SHARE * waiting_would_skip, \
        f"{skipped[True] - skipped[False]} more skipped; waiting for inference would skip {waiting_would_skip:.0f}"


def _keyed(o: Obs) -> int:
    lines = stats(o.log_text(), "'AI' on 'Clip'")
    return int(lines[-1]["frames"]) if lines else 0


@pytest.fixture
def lifecycle(tmp_path) -> Obs:
    """A second OBS: dependencies through OBS_RVM_SITE_PACKAGES; a second scene collection to switch to."""
    config = ObsConfig(
        script=SCRIPT,
        site_packages=SITE_PACKAGES,
        inputs=[
            image_input("Person", ASTRONAUT, [ai_filter("AI", background="color", color=rgb_to_obs_color(BLUE))]),
            media_input("Clip", CLIP, [ai_filter("AI", background="blur")]),
        ],
        other_collections={"Other": [image_input("Third", ASTRONAUT, [ai_filter("AI", background="transparent")])]},
    )
    o = Obs(config, tmp_path)
    yield o.start()
    o.stop()


def test_remove_switch_collection_and_exit_cleanly(lifecycle):
    o, c = lifecycle, lifecycle.client
    o.wait_log(r"'AI' on 'Person': keying", 90)
    o.wait_log(r"'AI' on 'Clip': keying", 90)

    c.remove_source_filter("Person", "AI")
    o.wait_log(r"AI Background 'AI'( on 'Person')? removed: \d+ frames keyed", 30)
    o.wait_for(lambda: np.abs(o.screenshot("Person").astype(int) - rgba(ASTRONAUT)).max() <= 1, 30, "the bare picture")
    c.create_source_filter("Person", "Added", "obs_rvm_ai_background", {"background": "transparent"})
    o.wait_log(r"'Added' on 'Person': keying", 90)
    o.wait_for(lambda: transparent_corners(o.screenshot("Person")), 60, "transparent corners from a filter added at "
               "run time")

    mark = len(o.log_text())
    c.set_current_scene_collection("Other")  # destroys this collection's filters, reloads the scripts
    o.wait_log(r"AI Background filter already registered \(script reloaded\)", 60, after=mark)
    o.wait_log(r"'AI' on 'Third': keying", 90, after=mark)
    o.wait_for(lambda: transparent_corners(o.screenshot("Third")), 60, "transparent corners in the other collection")
    time.sleep(1)  # inference in flight when OBS is asked to quit

    assert o.stop() == 0
    log = o.log_text()
    assert count(r"AI Background filter registered", log) == 1 and "already exists" not in log
    # Person's (removed), then Added and Clip (collection switch), then Third (exit)
    assert count(r"removed: \d+ frames keyed", log) == 4
    # OBS may unload the script before it destroys the last filter, and Python finalizes soon after: whichever
    # comes first stops Third's worker (keying when OBS was asked to quit), and none is left when Python exits.
    exit_lines = log[log.index("==== Shutting down"):]
    assert re.search(r"script unloaded; \d+ worker\(s\) stopped", exit_lines), exit_lines
    assert "Python is exiting; no worker running" in exit_lines, exit_lines
    assert "Traceback" not in log and "Exception ignored" not in log
    ours = [line for line in log.splitlines() if "[obs-rvm]" in line]
    assert not [line for line in ours if re.search(r"failed|unexpected|still finishing|error", line)]
    assert re.search(r"Number of memory leaks: 0\b", log)


def test_missing_dependencies_load_anyway_with_one_clear_line(tmp_path):
    """The script file on its own (no .venv beside it, nothing installed): OBS runs, one line says what to do."""
    package = tmp_path / "pkg" / "obs_rvm"
    shutil.copytree(REPO / "obs_rvm", package, ignore=shutil.ignore_patterns("__pycache__"))
    empty = tmp_path / "empty-site-packages"
    empty.mkdir()
    config = ObsConfig(script=package / "obs_script.py", site_packages=[empty],
                       inputs=[image_input("Person", ASTRONAUT, [ai_filter("AI", background="color")])])
    with Obs(config, tmp_path / "obs") as o:
        line = o.wait_log(r"\[obs-rvm\] AI Background is not available: .*", 60).group(0)
        shot = o.screenshot("Person")
    assert o.returncode == 0
    assert "No module named" in line and "installer/install.sh" in line and str(empty) in line
    assert f"Python {sys.version_info[0]}.{sys.version_info[1]}" in line
    log = o.log_text()
    assert count(r"AI Background is not available", log) == 1 and "Traceback" not in log
    assert np.abs(shot.astype(int) - rgba(ASTRONAUT)).max() <= 1  # the source still shows, unfiltered
