"""Several cameras, each with AI Background, in one real OBS: the filters take turns on the CPU (obs_rvm/turns.py),
share one session where their graphs match, and never share a recurrent state.

A person and a plain wall of the same size, each with the filter (transparent, in sync, so a screenshot is the
keyed frame): the person keys as with one filter, the wall stays background the whole time (a state carried over
from the person would show in its alpha), settings changed on one never reach the other, and removing one filter or
deleting one source leaves the other keying. The tests share one OBS and run in file order.
"""

from __future__ import annotations

import re
import shutil
import site
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from obs_harness import Obs, ObsConfig, ai_filter, image_input, reference, similar

from obs_rvm.obs.settings import rgb_to_obs_color

from paths import ASTRONAUT

pytestmark = [
    pytest.mark.obs,
    pytest.mark.skipif(not (shutil.which("obs") and shutil.which("Xvfb")),
                       reason="needs OBS Studio and Xvfb: apt-get install obs-studio xvfb"),
]

REPO = Path(__file__).resolve().parent.parent
WALL_RGB = (178, 168, 150)
BLUE, YELLOW = (0, 0, 255), (255, 220, 0)
WATCH_S = 8.0
"""How long the two filters are watched keying side by side."""


def corner_colour(image: np.ndarray) -> np.ndarray:
    return image[:16, :16, :3].reshape(-1, 3).mean(0)


@pytest.fixture(scope="module")
def cameras(tmp_path_factory) -> Obs:
    work = tmp_path_factory.mktemp("obs-cameras")
    person = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGBA)
    wall = np.dstack([np.full((*person.shape[:2], 3), WALL_RGB, np.uint8),
                      np.full(person.shape[:2], 255, np.uint8)])
    cv2.imwrite(str(work / "wall.png"), cv2.cvtColor(wall, cv2.COLOR_RGBA2BGR))
    keyed = {"background": "transparent", "sync": "sync"}
    config = ObsConfig(
        script=REPO / "obs_rvm" / "obs_script.py", site_packages=[Path(p) for p in site.getsitepackages()],
        inputs=[image_input("Wall", work / "wall.png", [ai_filter("AI", **keyed)]),
                image_input("Person", ASTRONAUT, [ai_filter("AI", **keyed)])],
        env={"OBS_RVM_STATS_INTERVAL": "1"})
    with Obs(config, work) as o:
        o.wait_log(r"'AI' on 'Person': keying", 180)
        o.wait_log(r"'AI' on 'Wall': keying", 180)
        yield o


def test_two_filters_key_side_by_side_without_sharing_a_state(cameras):
    expected = reference(cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGBA), background="transparent")
    cameras.wait_for(lambda: similar(cameras.screenshot("Person"), expected, slice(3, 4)), 90,
                     "the person keyed as one filter keys it")
    end = time.monotonic() + WATCH_S
    while time.monotonic() < end:
        person, wall = cameras.screenshot("Person"), cameras.screenshot("Wall")
        assert similar(person, expected, slice(3, 4)), "the person keys as with one filter"
        assert wall[..., 3].mean() <= 2 and (wall[..., 3] > 64).mean() <= 0.001, "the wall stays background"
    shares = re.findall(r"stats AI Background 'AI' on 'Wall': .*sharing=(\d+)", cameras.log_text())
    assert shares and shares[-1] == "2", "the two filters take turns"


def test_settings_of_one_filter_never_reach_the_other(cameras):
    cameras.client.set_source_filter_settings("Person", "AI", {"background": "color",
                                                               "color": rgb_to_obs_color(BLUE)}, True)
    cameras.wait_for(lambda: np.abs(corner_colour(cameras.screenshot("Person")) - BLUE).max() <= 4, 90,
                     "the person's background turned blue")
    wall = cameras.screenshot("Wall")
    assert wall[..., 3].mean() <= 2, "the wall is still transparent background"


def test_removing_one_filter_or_its_source_leaves_the_other_keying(cameras):
    c = cameras.client
    c.remove_source_filter("Wall", "AI")
    cameras.wait_for(lambda: cameras.screenshot("Wall")[..., 3].mean() >= 250, 30, "the wall without its filter")
    c.set_source_filter_settings("Person", "AI", {"color": rgb_to_obs_color(YELLOW)}, True)
    cameras.wait_for(lambda: np.abs(corner_colour(cameras.screenshot("Person")) - YELLOW).max() <= 4, 90,
                     "the person keying on after the other filter was removed")
    c.create_source_filter("Wall", "AI", "obs_rvm_ai_background", {"background": "transparent", "sync": "sync"})
    cameras.wait_for(lambda: cameras.screenshot("Wall")[..., 3].mean() <= 2, 120, "the wall keyed again")
    c.remove_input("Wall")
    c.set_source_filter_settings("Person", "AI", {"color": rgb_to_obs_color(BLUE)}, True)
    cameras.wait_for(lambda: np.abs(corner_colour(cameras.screenshot("Person")) - BLUE).max() <= 4, 90,
                     "the person keying on after the other source was deleted")
    assert not cameras.crashed
