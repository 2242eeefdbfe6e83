"""Key frames with one backend in a process of its own, for tests/test_webgpu.py:

    python provider_child.py BACKEND FRAMES.npy OUT.npz [--ratio R] [--unpadded]

A plugin provider's library is registered once per process, and WebGPU reads ORT_WEBGPU_EP_ALLOW_SOFTWARE_ADAPTER
when it is registered: a child with that variable set lets the test use the software adapter without the rest of
the test run (which plans `auto`) ever seeing it. The frames go through MattingSession, the product's own path
(plan, graph preparation for the chosen provider, engine); --unpadded instead opens the plan's first candidate on
the graph prepared without the WebGPU channel padding, to show what the padding fixes. OUT.npz holds the keyed
frames ("keyed"), what ran ("described") and the mean seconds a frame after the first ("seconds"). Exit status
CANNOT_RUN, with the reason on stderr, where the backend cannot run here.
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from obs_rvm.backgrounds import BackgroundConfig
from obs_rvm.engines import open_engine, plan
from obs_rvm.errors import BackendError
from obs_rvm.graph import GraphSpec, Variant, prepare
from obs_rvm.matting import MattingSession, SessionOptions
from obs_rvm.models import resolve_model

CANNOT_RUN = 4


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("backend")
    parser.add_argument("frames")
    parser.add_argument("out")
    parser.add_argument("--ratio", type=float, default=0.5)
    parser.add_argument("--unpadded", action="store_true")
    args = parser.parse_args(argv)
    try:
        return _key(args)
    except BackendError as e:  # planned but cannot start (WebGPU lists a software device it then finds no adapter for)
        print(e, file=sys.stderr)
        return CANNOT_RUN


def _key(args: argparse.Namespace) -> int:
    frames = np.load(args.frames)
    height, width = frames.shape[1:3]
    keyed, times = [], []
    if args.unpadded:
        candidate = plan(args.backend)[0][0]
        spec = GraphSpec(width, height, args.ratio, Variant.TRANSPARENT, fp16=candidate.fp16)
        engine = open_engine(candidate, prepare(resolve_model(None), spec))
        step, described = (lambda frame: engine.run(frame, {})), engine.describe()
    else:
        options = SessionOptions(background=BackgroundConfig(mode="transparent"), downsample_ratio=args.ratio,
                                 backend=args.backend, scene_cut=0, layers=False)
        session = MattingSession(options)
        step, described = (lambda frame: session.process(frame, 0.0)), ""
    for frame in frames:
        started = time.perf_counter()
        keyed.append(step(frame).copy())
        times.append(time.perf_counter() - started)
    if not args.unpadded:
        described = session.status.backend
    np.savez(args.out, keyed=np.stack(keyed), described=described, seconds=float(np.mean(times[1:] or times)))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
