#!/usr/bin/env python3
"""Patch an RVM ONNX into the prepared graph obs-rvm runs (ratio baked in, static shapes, pre/post-processing and
compositing inside, optionally FP16), for inspection or for building engines with other tools (trtexec, Netron).

    scripts/prepare_onnx.py --size 1920x1080 --gpu --background blur --fp16 -o out/
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from obs_rvm.cli import parse_ratio, parse_size
from obs_rvm.errors import ObsRvmError
from obs_rvm.graph import GraphSpec, Variant, prepare
from obs_rvm.matting import auto_downsample_ratio
from obs_rvm.models import resolve_model


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", help="catalog name or .onnx path (default: the default model, or $OBS_RVM_MODEL)")
    parser.add_argument("--size", type=parse_size, nargs="+", required=True, metavar="WxH")
    parser.add_argument("--downsample", type=parse_ratio, default=None, metavar="R|auto")
    parser.add_argument("--gpu", action="store_true", help="auto ratio for a GPU (512 px) instead of a CPU (320 px)")
    parser.add_argument("--background", choices=[v.value for v in Variant], nargs="+",
                        default=[v.value for v in Variant], help="graph variants (default: all)")
    parser.add_argument("--fp16", action="store_true", help="RVM's recurrent core in float16 (TensorRT's FP16 path)")
    parser.add_argument("-o", "--output", type=Path, help="copy the graphs into this folder")
    args = parser.parse_args(argv)
    try:
        model = resolve_model(args.model)
        for width, height in args.size:
            ratio = args.downsample or auto_downsample_ratio(height, width, args.gpu)
            for variant in args.background:
                graph = prepare(model, GraphSpec(width, height, ratio, Variant(variant), fp16=args.fp16))
                path = graph.path
                if args.output:
                    args.output.mkdir(parents=True, exist_ok=True)
                    name = f"rvm_{width}x{height}_r{ratio:g}_{variant}{'_fp16' if args.fp16 else ''}.onnx"
                    path = Path(shutil.copyfile(graph.path, args.output / name))
                io = ", ".join(f"{n} {d} {list(s)}" for n, (s, d) in {**graph.inputs, **graph.outputs}.items())
                print(f"{width}x{height} ratio {ratio:g} {variant}: {path}\n  {io}")
    except ObsRvmError as e:
        print(f"prepare_onnx: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
