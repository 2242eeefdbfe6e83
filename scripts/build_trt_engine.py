#!/usr/bin/env python3
"""Pre-build TensorRT engines into obs-rvm's engine cache, so OBS or the CLI start instantly at these sizes.

Same as `obs-rvm engine build` (obs_rvm/engines/prebuild.py). Needs an NVIDIA GPU with tensorrt and pycuda
(pip install 'obs-rvm[gpu]').

    scripts/build_trt_engine.py --size 1280x720 1920x1080
"""

from __future__ import annotations

import argparse
import sys

from obs_rvm.cli import parse_ratio, parse_size
from obs_rvm.engines.prebuild import VARIANTS, prebuild
from obs_rvm.errors import ObsRvmError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="catalog name or .onnx path (default: the default model, or $OBS_RVM_MODEL)")
    parser.add_argument("--size", type=parse_size, nargs="+", required=True, metavar="WxH")
    parser.add_argument("--downsample", type=parse_ratio, default=None, metavar="R|auto",
                        help="RVM downsample ratio (default: auto, as a session on the GPU picks it)")
    parser.add_argument("--background", choices=VARIANTS, nargs="+", default=list(VARIANTS),
                        help="graph variants: transparent, replace (colour, image, video), blur (default: all)")
    parser.add_argument("--fp32", dest="fp16", action="store_false", help="build FP32 engines instead of FP16")
    args = parser.parse_args(argv)
    try:
        prebuild(args.size, model=args.model, variants=args.background, fp16=args.fp16, ratio=args.downsample,
                 say=lambda m: print(m, flush=True))
    except ObsRvmError as e:
        print(f"build_trt_engine: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
