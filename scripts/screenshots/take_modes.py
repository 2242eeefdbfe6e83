#!/usr/bin/env python3
"""Retake scripts/screenshots/obs-live.png and obs-sync.png: the signing clip with a blurred background, as OBS
renders the source (an obs-websocket screenshot) in live video and in sync, on this machine's CPU.

    .venv/bin/python scripts/screenshots/take_modes.py [--out scripts/screenshots] [--at 0.8]

Each picture is taken --at seconds into the clip's loop (the media source is restarted first), so both show the
same moment of the same movement: live video draws that frame over a matte up to one inference old, in sync shows
the last keyed frame.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
sys.path.insert(0, str(REPO / "tests"))

from obs_harness import Obs, ObsConfig, ai_filter, media_input  # noqa: E402

from paths import CLIPS, MODEL  # noqa: E402

CLIP = CLIPS / "help.mkv"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=HERE)
    p.add_argument("--at", type=float, default=0.8, help="seconds into the clip (0.8: the hands meet)")
    args = p.parse_args()
    site = [Path(s) for s in __import__("site").getsitepackages()]
    config = ObsConfig(script=REPO / "obs_rvm" / "obs_script.py", site_packages=site,
                       inputs=[media_input("Camera", CLIP, [ai_filter("AI", background="blur", sync="live")])],
                       env={"OBS_RVM_MODEL": str(MODEL)} if MODEL.is_file() else {})
    with Obs(config, Path("/tmp/obs-rvm-modes")) as obs:
        for mode in ("live", "sync"):
            mark = len(obs.log_text())
            obs.client.set_source_filter_settings("Camera", "AI", {"sync": mode}, True)
            obs.wait_log(r"'AI' on 'Camera': keying", 180, after=mark)
            time.sleep(3)  # RVM's recurrent state settles
            obs.client.trigger_media_input_action("Camera", "OBS_WEBSOCKET_MEDIA_INPUT_ACTION_RESTART")
            time.sleep(args.at)
            shot = obs.screenshot("Camera")
            path = args.out / f"obs-{mode}.png"
            cv2.imwrite(str(path), cv2.cvtColor(shot, cv2.COLOR_RGBA2BGR))
            print(f"{path}: {shot.shape[1]}x{shot.shape[0]}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
