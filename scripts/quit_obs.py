#!/usr/bin/env python3
"""Does OBS crash as it quits? Short OBS sessions (Xvfb, under gdb) that switch the camera's clip a few times and
quit, counted, with the AI Background filter, with OBS's own Color Correction filter instead, or with neither.

    .venv/bin/python scripts/quit_obs.py ai 12         # our script and filter
    .venv/bin/python scripts/quit_obs.py cc 12         # our script loaded, OBS's Color Correction filter
    .venv/bin/python scripts/quit_obs.py script 12     # our script loaded, no filter
    .venv/bin/python scripts/quit_obs.py bare-cc 12    # no script, OBS's Color Correction filter

--quit picks how OBS is asked to quit: window (the main window's close button, as a user does), sigint (Ctrl-C), or
sigint-thread (SIGINT delivered to libobs' graphics thread, where a process-directed SIGINT may also land: OBS before
29.1 then closes its main window on that thread; see docs/troubleshooting.md).

A crashed run's folder (gdb's backtrace of every thread in obs-stdout.txt) is printed and kept.
"""

from __future__ import annotations

import argparse
import site
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "scripts"))

import soak_obs  # noqa: E402
from obs_harness import FilterSpec, Obs, ObsConfig, ai_filter, media_input  # noqa: E402

from paths import MODEL  # noqa: E402

SETUPS = {
    "ai": (True, [ai_filter("AI", background="blur")]),
    "cc": (True, [FilterSpec("CC", {"gamma": 0.5}, "color_filter")]),
    "script": (True, []),
    "bare-cc": (False, [FilterSpec("CC", {"gamma": 0.5}, "color_filter")]),
}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("setup", choices=SETUPS)
    p.add_argument("runs", type=int)
    p.add_argument("--switches", type=int, default=12, help="clip switches per session (640x480 <-> 1280x720)")
    p.add_argument("--quit", choices=("window", "sigint", "sigint-thread"), default="window",
                   help="how OBS is asked to quit (default: its main window's close button)")
    args = p.parse_args()
    with_script, filters = SETUPS[args.setup]
    work = Path(tempfile.mkdtemp(prefix="obs-rvm-quit-"))
    clips = [soak_obs.make_clip(size, work) for size in ((640, 480), (1280, 720))]
    crashes = 0
    for run in range(args.runs):
        config = ObsConfig(script=REPO / "obs_rvm" / "obs_script.py" if with_script else None,
                           site_packages=[Path(s) for s in site.getsitepackages()],
                           inputs=[media_input("Camera", clips[0], filters)],
                           env={"OBS_RVM_MODEL": str(MODEL), "PYTHONFAULTHANDLER": "1"}, gdb=True)
        obs = Obs(config, work / f"run{run}")
        try:
            obs.start()
            time.sleep(3)
            for k in range(args.switches):
                obs.client.set_input_settings("Camera", {"local_file": str(clips[(k + 1) % 2])}, True)
                time.sleep(0.7)
        finally:
            obs.stop(how=args.quit)
        out = (obs.workdir / "obs-stdout.txt").read_text(errors="replace")
        crashed = obs.returncode != 0 or "received signal SIG" in out
        crashes += crashed
        print(f"{args.setup} run {run}: exit {obs.returncode}" + (f", crashed: {obs.workdir}" if crashed else ""),
              flush=True)
    print(f"{args.setup}, quit by {args.quit}: {crashes} of {args.runs} sessions crashed as OBS quit")
    return 0


if __name__ == "__main__":
    sys.exit(main())
