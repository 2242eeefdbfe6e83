#!/usr/bin/env python3
"""Retake scripts/screenshots/obs-panel.png: the filter's properties in real OBS (Xvfb + openbox), as a user sees them.

    .venv/bin/python scripts/screenshots/take_panel.py [--out scripts/screenshots/obs-panel.png]

The picture is cropped to the "Filters for 'Person'" dialog where openbox places it on the harness's 1280x800 screen
(the full screen is kept in /tmp/obs-rvm-panel-screen.png: look at it if the crop is off).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

HERE = Path(__file__).resolve().parent
DIALOG = (slice(3, 753), slice(208, 1070))
"""Rows and columns of the filters dialog on the screen (openbox centres it over OBS's main window)."""
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests"))

from obs_harness import Obs, ObsConfig, ai_filter, image_input  # noqa: E402

from paths import ASTRONAUT  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=HERE / "obs-panel.png")
    args = parser.parse_args()
    config = ObsConfig(script=REPO / "obs_rvm" / "obs_script.py",
                       site_packages=[Path(p) for p in __import__("site").getsitepackages()],
                       inputs=[image_input("Person", ASTRONAUT, [ai_filter("AI", background="blur")])],
                       window_manager=True)
    with Obs(config, Path("/tmp/obs-rvm-panel-shot")) as obs:
        obs.wait_log(r"'AI' on 'Person': keying", 180)
        obs.client.open_input_filters_dialog("Person")
        time.sleep(6)  # the dialog paints, the status settles
        screen = obs.screen(Path("/tmp/obs-rvm-panel-screen.png"))
    picture = screen[DIALOG]
    cv2.imwrite(str(args.out), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out} ({picture.shape[1]}x{picture.shape[0]})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
