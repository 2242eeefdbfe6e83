"""End-to-end numbers for `obs-rvm camera` on this machine, next to `obs-rvm bench`'s pipeline fps.

Each round runs, one after the other in one process: bench's pipeline throughput (bare model and pipeline
alternating), the matting session alone on the same frame (no alternation), and the camera pipeline for a while
(a 640x480 clip played in real time, looping, into the real loopback writer - YUYV conversion and write(2) - aimed
at /dev/null). Several short rounds rather than one long one, so a burst of load on a shared machine shows up as
one odd round instead of skewing the comparison.

    python scripts/bench_camera.py CLIP [--rounds 3] [--seconds 10] [-b blur]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

from obs_rvm.backgrounds import BackgroundConfig
from obs_rvm.bench import sample_frame, throughput
from obs_rvm.live.camera import CameraConfig, run_camera
from obs_rvm.live.capture import open_capture
from obs_rvm.live.v4l2 import LoopbackSink
from obs_rvm.matting import MattingSession, SessionOptions


def session_alone_ms(options: SessionOptions, w: int, h: int, frames: int) -> float:
    """Median time of MattingSession.process with nothing else running (bench interleaves a second model)."""
    frame = sample_frame(h, w)
    session = MattingSession(options)
    for _ in range(3):
        session.process(frame, 0.0)
    times = []
    for i in range(frames):
        start = time.perf_counter()
        session.process(frame, i / 30)
        times.append(time.perf_counter() - start)
    session.close()
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("clip", help="a 640x480 video (e.g. ../shared/media/clips/again.mkv)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0, help="camera run per round")
    parser.add_argument("--frames", type=int, default=30, help="frames per throughput measurement")
    parser.add_argument("-b", "--background", default="blur")
    args = parser.parse_args()
    options = SessionOptions(background=BackgroundConfig(args.background))
    probe = open_capture(args.clip)
    w, h = probe.size
    probe.close()
    ratios = []
    for round_ in range(1, args.rounds + 1):
        bench = throughput(options, w, h, args.frames)
        alone = session_alone_ms(options, w, h, args.frames)
        sink = LoopbackSink(os.open("/dev/null", os.O_WRONLY), "/dev/null", w, h)
        result = run_camera(CameraConfig(args.clip, "/dev/null", loop=True, duration=args.seconds, benchmark=True),
                            options, log=lambda line: print(f"    {line}", flush=True), sink=sink)
        lat = sorted(result.latencies_ms())
        infer = statistics.median(1000 * r.infer_s for r in result.records)
        ratios.append(result.keyed_fps / (1000 / bench.pipeline_ms))
        print(f"round {round_}: bench {bench.line()}\n"
              f"  session alone {alone:.1f} ms ({1000 / alone:.1f} fps)\n"
              f"  camera {w}x{h}: keyed {result.keyed_fps:.1f} fps (inference {infer:.1f} ms median) = "
              f"{ratios[-1]:.2f} x bench pipeline fps, {result.keyed_fps * alone / 1000:.2f} x session alone, "
              f"inference thread busy {result.keyed_fps * infer / 10:.0f}% of the time; "
              f"latency capture->written {statistics.median(lat):.0f} ms median, {lat[int(0.95 * len(lat))]:.0f} "
              f"ms p95, {lat[-1]:.0f} ms max; output {result.output_fps:.2f} fps (target {result.fps:g}), "
              f"{result.late_ticks} ticks late, {result.skipped_ticks} skipped; {result.dropped} of "
              f"{result.captured} frames dropped before inference", flush=True)
    print(f"camera keyed fps / bench pipeline fps, median of {args.rounds} rounds: {statistics.median(ratios):.2f}")


if __name__ == "__main__":
    main()
