#!/usr/bin/env python3
"""Pre-build TensorRT engines into obs-rvm's engine cache, so OBS or the CLI start instantly at these sizes.

Builds exactly what a session would build (same prepared graph, ratio, precision and cache key), then loads each
engine once to prove it works. Needs an NVIDIA GPU with tensorrt and pycuda (pip install 'obs-rvm[gpu]').

    scripts/build_trt_engine.py --size 1280x720 1920x1080
"""

from __future__ import annotations

import argparse
import sys
import time

from obs_rvm.cli import parse_ratio, parse_size
from obs_rvm.engines import open_engine, plan
from obs_rvm.engines.trt_cache import EngineCache
from obs_rvm.errors import ObsRvmError
from obs_rvm.graph import GraphSpec, Variant, prepare
from obs_rvm.matting import auto_downsample_ratio
from obs_rvm.models import resolve_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="catalog name or .onnx path (default: the default model, or $OBS_RVM_MODEL)")
    parser.add_argument("--size", type=parse_size, nargs="+", required=True, metavar="WxH")
    parser.add_argument("--downsample", type=parse_ratio, default=None, metavar="R|auto",
                        help="RVM downsample ratio (default: auto, as a session on the GPU picks it)")
    parser.add_argument("--background", choices=[v.value for v in Variant], nargs="+",
                        default=[v.value for v in Variant],
                        help="graph variants: transparent, replace (colour, image, video), blur (default: all)")
    parser.add_argument("--fp32", dest="fp16", action="store_false", help="build FP32 engines instead of FP16")
    args = parser.parse_args(argv)
    try:
        candidate = plan("tensorrt", args.fp16)[0][0]
        model = resolve_model(args.model)
        print(f"engine cache: {EngineCache().folder}")
        for width, height in args.size:
            ratio = args.downsample or auto_downsample_ratio(height, width, gpu=True)
            for variant in args.background:
                spec = GraphSpec(width, height, ratio, Variant(variant), fp16=candidate.fp16)
                started = time.monotonic()
                engine = open_engine(candidate, prepare(model, spec), on_status=lambda m: print(f"  {m}", flush=True))
                state = "built" if engine.built else "already cached"
                print(f"{width}x{height} ratio {ratio:g} {variant} {'FP16' if spec.fp16 else 'FP32'}: {state} "
                      f"({time.monotonic() - started:.0f} s) on {engine.device}")
                engine.close()
    except ObsRvmError as e:
        print(f"build_trt_engine: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
