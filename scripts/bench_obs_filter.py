#!/usr/bin/env python3
"""Measure the "AI Background" filter inside a real OBS (Xvfb, software OpenGL here) and the engine on its own.

For each canvas size: the engine alone (the same session options the filter uses, frame after frame), then OBS
with a looping clip of that size, without and with the filter, then the engine alone again (the machine is noisy:
compare numbers from one run). Prints the filter's own video_render time (median, p99), OBS's whole main-texture
render time, skipped frames, inference and shown fps, and the capture-to-screen latency.

    .venv/bin/python scripts/bench_obs_filter.py [--seconds 20] [--sizes 640x480,1280x720] [--mode blur]
        [--sync sync,live] [--matte-refresh 1] [--skip-still] [--clip FILE] [--record]
    .venv/bin/python scripts/bench_obs_filter.py --filters 3 --sizes 640x480   # several cameras, one OBS

With --sync sync,live the filter runs once per mode; for each it prints frames drawn per second (live: the current
video drawn over the newest matte), matte updates per second, the latency of the video and of the matte, and the
OBS process's CPU share (all cores = 100%). --clip takes another video, or a picture (looped into a still clip: what
"skip keying while still" is for).
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


def clip(width: int, height: int, folder: Path, source: Path = CLIPS / "help.mkv") -> Path:
    """The clip scaled to the canvas, decoded by OBS like a camera: by default a real person, moving; a picture
    becomes a 20 s still clip."""
    out = folder / f"clip-{source.stem}-{width}x{height}.mkv"
    still = ["-loop", "1", "-t", "20", "-r", "30"] if source.suffix.lower() in (".png", ".jpg", ".jpeg") else []
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", *still, "-i", str(source), "-vf",
                    f"scale={width}:{height},format=yuv420p", "-c:v", "libx264", "-preset", "ultrafast", str(out)],
                   check=True)
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def distinct_fps(path: Path, threshold: float = 0.5) -> tuple[float, int]:
    """Frames per second of a recording that differ from the frame before (mean |difference| of the grey picture
    above `threshold` levels), and the frame count. A frame OBS repeats because its render lagged is encoded as a
    copy of the one before: it does not count."""
    import cv2
    import numpy as np

    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS) or 30.0
    previous, distinct, count = None, 0, 0
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY).astype(np.int16)
        count += 1
        if previous is not None and float(np.abs(grey - previous).mean()) > threshold:
            distinct += 1
        previous = grey
    cap.release()
    return (distinct / (count - 1) * fps if count > 1 else 0.0), count


def obs_run(width: int, height: int, mode: str, seconds: float, enabled: bool, work: Path, source: Path,
            record: bool = False, **extra: object) -> dict:
    folder = work / ("on-" + "-".join(map(str, extra.values())) if enabled else "off")
    recordings = folder / "recordings" if record else None
    config = ObsConfig(script=REPO / "obs_rvm" / "obs_script.py",
                       site_packages=[Path(p) for p in __import__("site").getsitepackages()],
                       inputs=[media_input("Camera", clip(width, height, work, source),
                                           [ai_filter("AI", enabled=enabled, background=mode, **extra)])],
                       canvas=(width, height), env={"OBS_RVM_STATS_INTERVAL": "2"}, recordings=recordings)
    with Obs(config, folder) as o:
        if enabled:
            o.wait_log(r"'AI' on 'Camera': keying", 120)
        time.sleep(3)
        if record:
            o.client.start_record()
            time.sleep(1)  # the encoder's start-up is not what is measured
        before = o.client.get_stats()
        cpu_before, wall_before = cpu_seconds(o._obs.pid), time.monotonic()
        time.sleep(seconds)
        after = o.client.get_stats()
        cpu_share = (cpu_seconds(o._obs.pid) - cpu_before) / (time.monotonic() - wall_before) / os.cpu_count()
        recorded = Path(o.client.stop_record().output_path) if record else None
    log = o.log_text()
    result = {"skipped": after.render_skipped_frames - before.render_skipped_frames,
              "rendered": after.render_total_frames - before.render_total_frames, "cpu_share": cpu_share}
    if recorded is not None:
        result["distinct_fps"], result["recorded_frames"] = distinct_fps(recorded)
    profile = PROFILER.search(log)
    if profile:
        result["main_median"], result["main_p99"] = float(profile.group(1)), float(profile.group(2))
    stats = re.findall(r"stats AI Background 'AI' on 'Camera': (.*)", log)
    if stats:
        result.update(dict(kv.split("=", 1) for kv in stats[-1].split()))  # render_*, inference_*, frames keyed...
    return result


def filters_run(count: int, filtered: bool, width: int, height: int, mode: str, seconds: float, work: Path,
                source: Path) -> dict:
    """`count` sources playing the clip (stacked, each drawn whole), each with the filter in live video if
    `filtered`: OBS's skipped frames and render time, and each filter's matte updates and drawn frames per second."""
    movie = clip(width, height, work, source)
    inputs = [media_input(f"Camera{i + 1}", movie, [ai_filter("AI", background=mode, sync="live")] if filtered
                          else []) for i in range(count)]
    config = ObsConfig(script=REPO / "obs_rvm" / "obs_script.py",
                       site_packages=[Path(p) for p in __import__("site").getsitepackages()], inputs=inputs,
                       canvas=(width, height), env={"OBS_RVM_STATS_INTERVAL": "2"})
    with Obs(config, work / f"filters-{count}-{int(filtered)}") as o:
        if filtered:
            for i in range(count):
                o.wait_log(rf"'AI' on 'Camera{i + 1}': keying", 180)
        time.sleep(5)
        before = o.client.get_stats()
        time.sleep(seconds)
        after = o.client.get_stats()
    log = o.log_text()
    result = {"skipped": after.render_skipped_frames - before.render_skipped_frames,
              "rendered": after.render_total_frames - before.render_total_frames,
              "render_ms": after.average_frame_render_time, "filters": []}
    for i in range(count if filtered else 0):
        lines = re.findall(rf"stats AI Background 'AI' on 'Camera{i + 1}': (.*)", log)
        result["filters"].append(dict(kv.split("=", 1) for kv in lines[-1].split()) if lines else {})
    return result


def filters_table(most: int, width: int, height: int, mode: str, seconds: float, source: Path) -> None:
    """The several-cameras table: N sources without the filter, then 1..N sources each with it, one OBS each."""
    print(f"{width}x{height} {mode}, live video, {source.name} as N stacked sources, {seconds:g} s each:")
    print("| N filters | OBS skipped frames | OBS average frame render time | matte updates/s per filter (total) "
          "| drawn/s per filter | filter render median / p99 | captures not keyed | state resets |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    with tempfile.TemporaryDirectory() as tmp:
        for count, filtered in [(most, False), *((n, True) for n in range(1, most + 1))]:
            r = filters_run(count, filtered, width, height, mode, seconds, Path(tmp), source)
            mattes = [float(f.get("inference_fps", "nan")) for f in r["filters"]]
            drawn = [float(f.get("drawn_fps", "nan")) for f in r["filters"]]
            share = f"{', '.join(f'{m:.1f}' for m in mattes)} ({sum(mattes):.1f})" if mattes else "-"
            render = ", ".join(f"{f.get('render_median_ms', '?')} / {f.get('render_p99_ms', '?')}"
                               for f in r["filters"])
            print(f"| {count if filtered else f'0 ({count} sources)'} | {r['skipped']} / {r['rendered']} "
                  f"({100 * r['skipped'] / max(1, r['rendered']):.1f}%) | {r['render_ms']:.1f} ms | {share} | "
                  f"{', '.join(f'{d:.1f}' for d in drawn) or '-'} | "
                  f"{render or '-'} | "
                  f"{', '.join(f.get('dropped', '?') for f in r['filters']) or '-'} | "
                  f"{', '.join(f.get('resets', '?') for f in r['filters']) or '-'} |", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--sizes", default="640x480,1280x720")
    parser.add_argument("--mode", default="blur")
    parser.add_argument("--sync", default="sync,live", help="video modes to measure, comma-separated")
    parser.add_argument("--matte-refresh", type=int, default=1, choices=(1, 2, 3))
    parser.add_argument("--skip-still", action="store_true")
    parser.add_argument("--clip", type=Path, default=CLIPS / "help.mkv", help="a video, or a picture (a still clip)")
    parser.add_argument("--record", action="store_true",
                        help="OBS records during each run (x264, Simple output): prints the distinct frames per "
                             "second in the file, with the filter vs without")
    parser.add_argument("--filters", type=int, default=0, metavar="N",
                        help="instead: OBS with 1..N sources, each with the filter (live video), and N without: "
                             "skipped frames, render time, each filter's matte and drawn rates")
    args = parser.parse_args()
    os.environ.setdefault("OBS_RVM_MODEL", str(MODEL))
    os.environ.setdefault("OBS_RVM_CACHE_DIR", str(Path(tempfile.gettempdir()) / "obs-rvm-test-cache"))
    if args.filters:
        for size in args.sizes.split(","):
            width, height = map(int, size.split("x"))
            filters_table(args.filters, width, height, args.mode, args.seconds, args.clip)
        return
    for size in args.sizes.split(","):
        width, height = map(int, size.split("x"))
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            engine_before = engine_alone(width, height, args.mode, args.seconds / 2)
            off = obs_run(width, height, args.mode, args.seconds, False, work, args.clip, args.record)
            runs = {sync: obs_run(width, height, args.mode, args.seconds, True, work, args.clip, args.record,
                                  sync=sync, matte_refresh=args.matte_refresh, skip_still=args.skip_still)
                    for sync in args.sync.split(",")}
            engine_after = engine_alone(width, height, args.mode, args.seconds / 2)
        engine_fps = 2000 / (engine_before + engine_after)
        print(f"{width}x{height} {args.mode}, {args.clip.name}: engine alone {engine_fps:.1f} fps "
              f"({engine_before:.0f} / "
              f"{engine_after:.0f} ms before / after); without the filter OBS render_main_texture median "
              f"{off.get('main_median')} / p99 {off.get('main_p99')} ms, skipped {off['skipped']}/{off['rendered']}, "
              f"OBS CPU {100 * off['cpu_share']:.0f}%")
        if args.record:
            print(f"  recorded without the filter: {off['distinct_fps']:.1f} distinct frames/s "
                  f"({off['recorded_frames']} frames)")
        for sync, on in runs.items():
            live = on.get("layers") == "1"
            print(f"  {sync} ({'live video' if live else 'in sync'}), {on.get('backend', '?')}, matte refresh "
                  f"{args.matte_refresh}{', skip still' if args.skip_still else ''}:")
            print(f"    frames drawn {float(on.get('drawn_fps', 0)):.1f} fps, matte updates (inference) "
                  f"{float(on['inference_fps']):.1f} fps, skipped frames {on['skipped']}/{on['rendered']}")
            print(f"    filter video_render: median {float(on['render_median_ms']):.2f} ms, p99 "
                  f"{float(on['render_p99_ms']):.2f} ms; OBS render_main_texture median {on.get('main_median')} / "
                  f"p99 {on.get('main_p99')} ms")
            matte = float(on["latency_ms"])
            video = "0 ms (the current frame)" if live else f"{matte:.0f} ms"
            print(f"    latency of the video {video}, of the matte {matte:.0f} ms (median); OBS CPU "
                  f"{100 * on['cpu_share']:.0f}% of all cores")
            if args.record:
                print(f"    recorded: {on['distinct_fps']:.1f} distinct frames/s ({on['recorded_frames']} frames), "
                      f"with/without the filter {on['distinct_fps'] / off['distinct_fps']:.2f}")

if __name__ == "__main__":
    main()
