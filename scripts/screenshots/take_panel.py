#!/usr/bin/env python3
"""Retake scripts/screenshots/obs-panel.png: the filter's properties in real OBS (Xvfb + openbox), as a user sees them.

    .venv/bin/python scripts/screenshots/take_panel.py [--out scripts/screenshots/obs-panel.png]
    .venv/bin/python scripts/screenshots/take_panel.py --giving-way [--out scripts/screenshots/obs-giving-way.png]

--giving-way (needs xdotool): the panel scrolled down to its Status while keying gives way to OBS (live video of the
signing clip at 1280x720, where OBS's software OpenGL renders late on 2 cores); the dialog is opened once the stats
line shows a pause of at least 5 ms, since the Status is written when the panel opens.

The picture is cropped to the "Filters for 'Person'" dialog where openbox places it on the harness's 1280x800 screen
(the full screen is kept in /tmp/obs-rvm-panel-screen.png: look at it if the crop is off).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from pathlib import Path

import cv2

HERE = Path(__file__).resolve().parent
DIALOG = (slice(3, 753), slice(208, 1070))
"""Rows and columns of the filters dialog on the screen (openbox centres it over OBS's main window)."""
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests"))

from obs_harness import Obs, ObsConfig, ai_filter, image_input, media_input  # noqa: E402

from paths import ASTRONAUT  # noqa: E402

WORK = Path("/tmp/obs-rvm-panel-shot")
"""OBS's profile and logs, and the 1280x720 clip of --giving-way."""
FILTER_ITEM = (264, 442)
"""Screen x, y of the filter in the dialog's "Effect Filters" list: for a media source the dialog opens with nothing
selected (it has an "Audio/Video Filters" list too), so no properties show until the filter is clicked."""
SPLITTER = (770, 697)
"""Screen x, y of the handle between the dialog's preview and its properties when a 16:9 source's preview has taken
all the height (the properties then have none): dragged up to PROPERTIES' height, as a user would."""
PROPERTIES = (770, 400)
"""A point inside the properties once the handle is dragged there, where the mouse wheel scrolls them."""
STATUS_SCROLL = 11
"""Wheel steps that bring the Status group's title to the top of the properties (14 reach their end)."""


def show_status(display: str) -> None:
    """Select the filter, drag the preview/properties handle up, and scroll the properties down to the Status."""
    env = {**os.environ, "DISPLAY": display}
    xdotool = ["xdotool", "mousemove", *map(str, FILTER_ITEM), "click", "1", "sleep", "2",
               "mousemove", *map(str, SPLITTER), "mousedown", "1", "sleep", "0.3", "mousemove",
               *map(str, PROPERTIES), "sleep", "0.3", "mouseup", "1", "sleep", "0.5", "click", "--repeat",
               str(STATUS_SCROLL), "--delay", "30", "5"]
    subprocess.run(xdotool, env=env, check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--giving-way", action="store_true", help="the Status while keying gives way to OBS")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or HERE / ("obs-giving-way.png" if args.giving_way else "obs-panel.png")
    site = [Path(p) for p in __import__("site").getsitepackages()]
    if args.giving_way:
        sys.path.insert(0, str(REPO / "scripts"))
        from bench_obs_filter import clip

        WORK.mkdir(parents=True, exist_ok=True)
        person = media_input("Person", clip(1280, 720, WORK), [ai_filter("AI", background="blur", sync="live")])
        config = ObsConfig(script=REPO / "obs_rvm" / "obs_script.py", site_packages=site, inputs=[person],
                           canvas=(1280, 720), window_manager=True, env={"OBS_RVM_STATS_INTERVAL": "1"})
    else:
        config = ObsConfig(script=REPO / "obs_rvm" / "obs_script.py", site_packages=site,
                           inputs=[image_input("Person", ASTRONAUT, [ai_filter("AI", background="blur")])],
                           window_manager=True)
    with Obs(config, WORK) as obs:
        obs.wait_log(r"'AI' on 'Person': keying", 180)
        if args.giving_way:
            found = obs.wait_log(r"drawn_fps=[1-9][\d.]* still_skipped=\d+ sharing=\d+ pause_ms=([5-9]|\d\d+)\b", 120)
            print(f"stats line: ...{found.string[found.start() - 80:found.end()]}")
        obs.client.open_input_filters_dialog("Person")
        time.sleep(6)  # the dialog paints, the status settles
        if args.giving_way:
            show_status(obs.display)
            time.sleep(2)
        screen = obs.screen(Path("/tmp/obs-rvm-panel-screen.png"))
    picture = screen[DIALOG]
    cv2.imwrite(str(out), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    print(f"wrote {out} ({picture.shape[1]}x{picture.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
