"""RVM's recurrent state across slow keying and pauses, in a real OBS: a filter that keys a matte only every
SLOW_MS (a slow CPU, several cameras taking turns) carries the state from one keyed frame to the next, so a still
picture settles to the pipeline's own matte and stays there; hiding the source for a second forgets the state once.
"""

from __future__ import annotations

import time

import cv2
import pytest
from obs_harness import Obs, ObsConfig, ai_filter, image_input, reference, similar
from test_obs_filter import ASTRONAUT, ENVIRONMENT_JSON, SCRIPT, pytestmark, stats

from obs_rvm.obs.worker import GAP_NS

__all__ = ["pytestmark"]  # OBS and Xvfb needed, as for test_obs_filter.py
SLOW_MS = 700
"""Each matte takes at least this long (OBS_RVM_MIN_INFERENCE_MS), on any machine: keyed frames lie further apart
than GAP_NS, as they do on a slow CPU."""
LABEL = "'AI' on 'Person'"


@pytest.fixture(scope="module")
def slow(tmp_path_factory) -> Obs:
    work = tmp_path_factory.mktemp("obs-slow")
    config = ObsConfig(
        script=SCRIPT,
        environment_json=ENVIRONMENT_JSON,
        inputs=[image_input("Person", ASTRONAUT, [ai_filter("AI", background="transparent", sync="sync")])],
        env={"OBS_RVM_STATS_INTERVAL": "1", "OBS_RVM_MIN_INFERENCE_MS": str(SLOW_MS)},
    )
    with Obs(config, work) as o:
        o.wait_log(rf"{LABEL}: keying", 180)
        yield o


def latest(obs: Obs, at_least: int) -> dict[str, str]:
    """The newest stats line once the filter has keyed `at_least` frames."""
    return obs.wait_for(lambda: next((s for s in stats(obs.log_text(), LABEL)[::-1] if int(s["frames"]) >= at_least),
                                     None), 90, f"{at_least} keyed frames")


def test_slow_keying_settles_the_matte_without_forgetting(slow):
    assert SLOW_MS * 1_000_000 > GAP_NS, "keyed frames must lie further apart than a pause that forgets the state"
    expected = reference(cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGBA), background="transparent")
    slow.wait_for(lambda: similar(slow.screenshot("Person"), expected, slice(3, 4)), 90,
                  "the still picture's matte settled as in the pipeline")
    line = latest(slow, 6)
    assert float(line["inference_ms"]) >= SLOW_MS
    assert line["resets"] == "0", "a slow filter forgot RVM's state between keyed frames"


def test_a_hidden_source_forgets_the_state_once(slow):
    c = slow.client
    item = c.get_scene_item_id("Scene", "Person").scene_item_id
    before = latest(slow, 0)
    assert before["resets"] == "0"
    c.set_scene_item_enabled("Scene", item, False)  # no screenshots meanwhile: they draw the source
    time.sleep(3 * GAP_NS / 1e9)
    c.set_scene_item_enabled("Scene", item, True)
    after = latest(slow, int(before["frames"]) + 4)
    assert after["resets"] == "1", "the pause in drawing forgets the state once, and only once"
    assert not slow.crashed
