#!/usr/bin/env python3
"""Measure the "AI Background" filter inside a real OBS (Xvfb, software OpenGL here) and the engine on its own.

For each canvas size: the engine alone (the same session options the filter uses, frame after frame), then OBS
with a looping clip of that size, without and with the filter, then the engine alone again (the machine is noisy:
compare numbers from one run). Prints the filter's own video_render time (median, p99), OBS's whole main-texture
render time, skipped frames, inference and shown fps, and the capture-to-screen latency.

    .venv/bin/python scripts/bench_obs_filter.py [--seconds 20] [--sizes 640x480,1280x720] [--mode blur]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from obs_harness import Obs, ObsConfig, ai_filter, filter_settings, media_input  # noqa: E402

from obs_rvm.bench import sample_frame  # noqa: E402
from obs_rvm.matting import MattingSession  # noqa: E402

from paths import CLIPS, MODEL  # noqa: E402

PROFILER = re.compile(r"render_main_texture: min=[\d.]+\s?ms, median=([\d.]+)\s?ms, max=[\d.]+\s?ms, "
                      r"99th percentile=([\d.]+)")
"""OBS's own profiler line at exit (it writes a no-break space before "ms")."""


def engine_alone(width: int, height: int, mode: str, seconds: float) -> float:
    """Median ms per frame of the filter's session options, one frame after another."""
    session = MattingSession(filter_settings(background=mode).session_options())
    frame = sample_frame(height, width)
    for _ in range(3):
        session.process(frame, 0.0)
    times = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        session.process(frame, len(times) / 30)
        times.append(time.perf_counter() - start)
    session.close()
    return 1000 * statistics.median(times)


def clip(width: int, height: int, folder: Path) -> Path:
    """The sample clip scaled to the canvas (a real person, moving; decoded by OBS like a camera)."""
    out = folder / f"clip-{width}x{height}.mkv"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-i", str(CLIPS / "help.mkv"), "-vf",
                    f"scale={width}:{height}", "-c:v", "libx264", "-preset", "ultrafast", str(out)], check=True)
    return out


def obs_run(width: int, height: int, mode: str, seconds: float, enabled: bool, work: Path) -> dict:
    config = ObsConfig(script=REPO / "obs_rvm" / "obs_script.py",
                       site_packages=[Path(p) for p in __import__("site").getsitepackages()],
                       inputs=[media_input("Camera", clip(width, height, work),
                                           [ai_filter("AI", enabled=enabled, background=mode)])],
                       canvas=(width, height), env={"OBS_RVM_STATS_INTERVAL": "2"})
    with Obs(config, work / ("on" if enabled else "off")) as o:
        if enabled:
            o.wait_log(r"'AI' on 'Camera': keying", 120)
        time.sleep(3)
        before = o.client.get_stats()
        time.sleep(seconds)
        after = o.client.get_stats()
    log = o.log_text()
    result = {"skipped": after.render_skipped_frames - before.render_skipped_frames,
              "rendered": after.render_total_frames - before.render_total_frames}
    profile = PROFILER.search(log)
    if profile:
        result["main_median"], result["main_p99"] = float(profile.group(1)), float(profile.group(2))
    stats = re.findall(r"stats AI Background 'AI' on 'Camera': (.*)", log)
    if stats:
        result.update(dict(kv.split("=", 1) for kv in stats[-1].split()))  # render_*, inference_*, frames keyed...
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sizes", default="640x480,1280x720")
    parser.add_argument("--mode", default="blur")
    args = parser.parse_args()
    os.environ.setdefault("OBS_RVM_MODEL", str(MODEL))
    os.environ.setdefault("OBS_RVM_CACHE_DIR", str(Path(tempfile.gettempdir()) / "obs-rvm-test-cache"))
    for size in args.sizes.split(","):
        width, height = map(int, size.split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            engine_before = engine_alone(width, height, args.mode, args.seconds / 2)
            off = obs_run(width, height, args.mode, args.seconds, False, work)
            on = obs_run(width, height, args.mode, args.seconds, True, work)
            engine_after = engine_alone(width, height, args.mode, args.seconds / 2)
        engine_fps = 2000 / (engine_before + engine_after)
        shown = float(on.get("shown_fps", 0))
        print(f"{width}x{height} {args.mode}, {on.get('backend', '?')}:")
        print(f"  filter video_render: median {float(on['render_median_ms']):.2f} ms, "
              f"p99 {float(on['render_p99_ms']):.2f} ms")
        print(f"  OBS render_main_texture: median {on.get('main_median')} ms / p99 {on.get('main_p99')} ms with the "
              f"filter, {off.get('main_median')} / {off.get('main_p99')} ms without")
        print(f"  skipped frames: {on['skipped']}/{on['rendered']} with, {off['skipped']}/{off['rendered']} without")
        print(f"  engine alone {engine_fps:.1f} fps ({engine_before:.0f} / {engine_after:.0f} ms before / after); in "
              f"OBS inference {float(on['inference_fps']):.1f} fps, keyed frames shown {shown:.1f} fps "
              f"({shown / engine_fps:.2f} of the engine alone)")
        print(f"  latency capture -> keyed frame drawn: {float(on['latency_ms']):.0f} ms (median); dropped "
              f"{on['dropped']} captured frames")


if __name__ == "__main__":
    main()
