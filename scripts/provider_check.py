"""One of ONNX Runtime's plugin providers against the CPU provider on real frames: the provider part of
scripts/gpu_check.sh, short enough for a 15-minute GPU lease.

    python scripts/provider_check.py BACKEND [--sizes 640x480 1280x720] [--frames 20] [--allow-cpu-device]

For each size it keys the same clip frames (tests/clips.py, $OBS_RVM_TEST_DATA) with BACKEND (webgpu, tensorrt-rtx,
openvino) and with the CPU provider, through MattingSession (the product's own path: plan, graph prepared for that
provider, engine), at the downsample ratio a GPU gets, and prints what ran, the first frame's time (shader or engine
build), the median milliseconds a frame after it, and how far the keyed RGBA is from the CPU's. The keyed frames
must match as the TensorRT engines are held to (tests/test_tensorrt_gpu.py): FP32 within one level anywhere; FP16
(TensorRT-RTX's default) within a mean of one level and more than 8 levels off in at most 1e-5 of the values.

Exit status: 0 ran and matched; 1 ran and differed; 4 (CANNOT_RUN) the backend cannot run here, or only on a CPU
device while --allow-cpu-device is not given (its reason on the last line).
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from obs_rvm.backgrounds import BackgroundConfig  # noqa: E402
from obs_rvm.engines import plan  # noqa: E402
from obs_rvm.errors import ObsRvmError  # noqa: E402
from obs_rvm.matting import MattingSession, SessionOptions, auto_downsample_ratio  # noqa: E402

CANNOT_RUN = 4
WARM_UP = 3
"""Frames left out of the median: the first compiles shaders (WebGPU) or builds the engine (TensorRT-RTX)."""


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.lower().partition("x")
    return int(width), int(height)


def key(backend: str, frames: list[np.ndarray], ratio: float) -> tuple[np.ndarray, list[float], str]:
    """The keyed frames (transparent background: the raw RGBA), each frame's seconds, and what ran."""
    options = SessionOptions(background=BackgroundConfig(mode="transparent"), downsample_ratio=ratio, backend=backend,
                             scene_cut=0, layers=False)
    session = MattingSession(options)
    keyed, seconds = [], []
    try:
        for frame in frames:
            started = time.perf_counter()
            keyed.append(session.process(frame, 0.0).copy())
            seconds.append(time.perf_counter() - started)
        return np.stack(keyed), seconds, session.status.backend
    finally:
        session.close()


def matches(diff: np.ndarray, fp16: bool) -> bool:
    if fp16:
        return diff.mean() <= 1 and (diff > 8).mean() <= 1e-5
    return int(diff.max()) <= 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="provider_check.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("backend", choices=["webgpu", "tensorrt-rtx", "openvino", "cpu"],
                        help="the provider to check (cpu: this script against itself, anywhere)")
    parser.add_argument("--sizes", type=parse_size, nargs="+", default=[(640, 480), (1280, 720)], metavar="WxH")
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--allow-cpu-device", action="store_true",
                        help="also run where the provider offers only a CPU device (OpenVINO's CPU, WebGPU's software "
                             "adapter with ORT_WEBGPU_EP_ALLOW_SOFTWARE_ADAPTER=1)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.ERROR, format="%(message)s")
    from clips import clip_frames

    try:
        candidate = plan(args.backend)[0][0]
    except ObsRvmError as e:
        print(f"provider_check: {e}", file=sys.stderr)
        return CANNOT_RUN
    if not candidate.gpu and not args.allow_cpu_device:
        print(f"provider_check: {args.backend} offers only {candidate.label()} here, not a GPU", file=sys.stderr)
        return CANNOT_RUN
    tolerance = "FP16: mean <= 1, > 8 levels in <= 1e-5" if candidate.fp16 else "FP32: max <= 1 level"
    print(f"provider_check: {args.backend} plans {candidate.label()} ({tolerance})", flush=True)
    good, results = True, []
    for width, height in args.sizes:
        frames = list(clip_frames(args.frames, width, height))
        ratio = auto_downsample_ratio(height, width, gpu=True)
        try:
            keyed, seconds, described = key(args.backend, frames, ratio)
        except ObsRvmError as e:
            print(f"provider_check: {args.backend} could not key {width}x{height}: {e}", file=sys.stderr)
            return CANNOT_RUN
        want, cpu_seconds, _ = key("cpu", frames, ratio)
        diff = np.abs(keyed.astype(np.int16) - want)
        alpha, rgb = diff[..., 3], diff[..., :3]
        ok = matches(alpha, candidate.fp16) and matches(rgb, candidate.fp16)
        good &= ok
        median = statistics.median(seconds[WARM_UP:] or seconds) * 1000
        cpu_median = statistics.median(cpu_seconds[WARM_UP:] or cpu_seconds) * 1000
        print(f"provider_check: {width}x{height} ratio {ratio:g}, {len(frames)} frames on {described}: first frame "
              f"{seconds[0] * 1000:.0f} ms, then {median:.1f} ms a frame (CPU provider {cpu_median:.1f} ms); "
              f"|alpha - CPU| mean {alpha.mean():.3f} max {alpha.max()}, |rgb - CPU| mean {rgb.mean():.3f} max "
              f"{rgb.max()}: {'matches' if ok else 'DIFFERS'}", flush=True)
        results.append(f"{width}x{height} {median:.1f} ms a frame (CPU {cpu_median:.1f} ms, alpha max {alpha.max()} "
                       f"mean {alpha.mean():.3f} levels off)")
    verdict = "matches the CPU provider" if good else "DIFFERS from the CPU provider"
    print(f"provider_check summary: {described}: {'; '.join(results)}: {verdict}")
    return 0 if good else 1


if __name__ == "__main__":
    sys.exit(main())
