"""The `obs-rvm` command: process files, run the demo, benchmark, manage models.

Every expected failure is an ObsRvmError with a one-line message: printed as `obs-rvm: error: ...`, exit code 1.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable
from pathlib import Path

from . import __version__
from .backgrounds import DEFAULT_COLOR, MODES, BackgroundConfig
from .engines import BACKENDS
from .errors import InputError, ObsRvmError
from .graph import MAX_FEATHER, MAX_GROW
from .matting import SessionOptions


def parse_color(text: str) -> tuple[int, int, int]:
    """'R,G,B' (0-255) or '#RRGGBB'."""
    text = text.strip()
    try:
        if text.startswith("#") and len(text) == 7:
            return tuple(int(text[i:i + 2], 16) for i in (1, 3, 5))  # type: ignore[return-value]
        parts = tuple(int(p) for p in text.split(","))
    except ValueError:
        parts = ()
    if len(parts) != 3 or not all(0 <= p <= 255 for p in parts):
        raise argparse.ArgumentTypeError(f"colour must be R,G,B with values 0-255 or #RRGGBB, got '{text}'")
    return parts  # type: ignore[return-value]


def parse_ratio(text: str) -> float | None:
    if text == "auto":
        return None
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"downsample ratio must be 'auto' or a number in (0, 1], got '{text}'")
    return value


def parse_blur(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(f"blur strength must be 0-100, got '{text}'")
    return value


def parse_pixels(low: int, high: int, what: str) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = low - 1
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be a whole number of pixels from {low} to {high}, got "
                                             f"'{text}'")
        return value

    return parse


def add_pipeline_options(parser: argparse.ArgumentParser, default_mode: str = "blur") -> None:
    g = parser.add_argument_group("matting")
    g.add_argument("--background", "-b", choices=MODES, default=default_mode, help="what replaces the background")
    g.add_argument("--color", type=parse_color, default=DEFAULT_COLOR, metavar="R,G,B",
                   help="colour for --background color (default 0,177,64, or #RRGGBB)")
    g.add_argument("--image", metavar="PATH", help="picture for --background image (scaled to cover the frame)")
    g.add_argument("--video", metavar="PATH", help="video for --background video (loops)")
    g.add_argument("--blur", type=parse_blur, default=50.0, metavar="0-100", help="blur strength (default 50)")
    g.add_argument("--model", metavar="NAME|PATH", help="catalog model (see `obs-rvm models`) or an .onnx file")
    g.add_argument("--downsample", type=parse_ratio, default=None, metavar="R",
                   help="RVM downsample ratio in (0, 1], or auto (default: from the resolution)")
    g.add_argument("--backend", choices=BACKENDS, default="auto",
                   help="auto (default): the best that runs here (TensorRT, TensorRT-RTX, CUDA, WebGPU or "
                        "OpenVINO, then the CPU); any other: that one, or an error saying what to install; "
                        "onnxruntime: CUDA, else the CPU")
    g.add_argument("--threads", type=int, default=None, metavar="N", help="CPU threads for onnxruntime")
    g.add_argument("--fp32", dest="fp16", action="store_false", help="TensorRT, TensorRT-RTX: run FP32 instead of FP16")
    g.add_argument("--matte-grow", type=parse_pixels(-MAX_GROW, MAX_GROW, "--matte-grow"), default=0, metavar="N",
                   help="grow (N > 0) or shrink (N < 0) the person's matte by N pixels, -10..10 (default 0)")
    g.add_argument("--feather", type=parse_pixels(0, MAX_FEATHER, "--feather"), default=0, metavar="N",
                   help="soften the matte's edge over about N pixels, 0..10 (default 0)")


def add_preset_option(parser: argparse.ArgumentParser) -> None:
    from .video_io import DEFAULT_H264_PRESET, H264_PRESETS

    parser.add_argument("--preset", choices=H264_PRESETS, default=None,
                        help=f"libx264 preset for H.264 output (default {DEFAULT_H264_PRESET}): a faster one leaves "
                             f"more CPU to the model and writes a bigger file of the same quality (measured at "
                             f"1280x720 on 2 cores: superfast 1.05x the fps for 1.9x the size, ultrafast 1.1x for "
                             f"2.7x)")


def session_options(args: argparse.Namespace) -> SessionOptions:
    background = BackgroundConfig(mode=args.background, color=args.color, image=args.image, video=args.video,
                                  blur=args.blur)
    if args.background == "image" and not args.image:
        raise InputError("--background image needs --image PATH")
    if args.background == "video" and not args.video:
        raise InputError("--background video needs --video PATH")
    return SessionOptions(model=args.model, background=background, downsample_ratio=args.downsample,
                          backend=args.backend, threads=args.threads, fp16=args.fp16,
                          matte_grow=args.matte_grow, feather=args.feather)


def _download_bar():
    """A tqdm progress callback for model downloads, created on first use."""
    from tqdm import tqdm

    bar = None

    def progress(done: int, total: int | None) -> None:
        nonlocal bar
        if bar is None:
            bar = tqdm(total=total, unit="B", unit_scale=True, desc="downloading model", leave=False)
        bar.update(done - bar.n)
        if total and done >= total:
            bar.close()

    return progress


def _status_printer(quiet: bool = False):
    """Session status lines (model preparation, TensorRT engine builds) on stderr; may be called from any thread."""

    from tqdm import tqdm

    def show(message: str) -> None:
        if not quiet:
            tqdm.write(f"obs-rvm: {message}", file=sys.stderr)  # above any progress bar, not through it

    return show


def _describe(session) -> str:
    status = session.status
    notes = f" [{'; '.join(status.notes)}]" if status.notes else ""
    return f"{status.backend}, model {status.model}, downsample {status.downsample_ratio:g}{notes}"


def cmd_process(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .matting import MattingSession
    from .process import encoder_threads, output_has_alpha, process
    from .video_io import open_sink, open_source

    options = session_options(args)
    source = open_source(args.input)
    session = MattingSession(options, download_progress=_download_bar(), on_status=_status_printer(args.quiet))
    frames = min(filter(None, (source.frames, args.max_frames)), default=None)
    sink = open_sink(args.output, source.fps, source.size, output_has_alpha(session),
                     None if args.no_audio else source.audio_path, frames / source.fps if frames else None,
                     encoder_threads(session), args.preset)
    if getattr(sink, "warning", None):
        print(f"obs-rvm: warning: {sink.warning}", file=sys.stderr)
    if args.preset and sink.encoder != "libx264":
        print(f"obs-rvm: warning: --preset applies to H.264 video (.mp4, .avi, .mkv/.mov without transparency); "
              f"{Path(args.output).name} is written with {sink.encoder}, so it is ignored", file=sys.stderr)
    with tqdm(total=frames, unit="frame", desc=Path(source.name).name, disable=args.quiet) as bar:
        result = process(session, source, sink, max_frames=args.max_frames, on_frame=lambda n: bar.update(1))
    print(f"wrote {sink.path}: {result.frames} frames in {result.seconds:.1f} s ({result.fps:.1f} fps), "
          f"{_describe(session)}")
    session.close()
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    import cv2

    from .demo import contact_sheet, default_output

    if args.camera is not None:
        from .live.camera import run_preview

        return run_preview(session_options(args), args.camera)
    out = Path(args.output) if args.output else default_output()
    options = session_options(args)
    sheet, session = contact_sheet(options, Path(args.input) if args.input else None,
                                   on_mode=lambda mode: print(f"keying: {mode}", file=sys.stderr),
                                   on_status=_status_printer())
    out.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(out), cv2.cvtColor(sheet, cv2.COLOR_RGB2BGR)):
        raise InputError(f"cannot write {out}: check the folder exists and is writable")
    print(f"contact sheet of every background mode: {out}")
    print(f"({_describe(session)})")
    return 0


def cmd_camera(args: argparse.Namespace) -> int:
    from .live.camera import CameraConfig, run_camera

    if (args.width is None) != (args.height is None):
        raise InputError("give both -W and -H, or neither (the camera's own size)")
    config = CameraConfig(args.input, args.output, (args.width, args.height) if args.width else None, args.fps,
                          args.mirror, args.loop, args.duration, args.benchmark,
                          Path(args.frame_log) if args.frame_log else None, args.input_format)
    result = run_camera(config, session_options(args), log=lambda line: print(f"obs-rvm: {line}", file=sys.stderr))
    print(result.summary())
    return 0


def positive(kind: type) -> Callable[[str], float]:
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = 0
        if value <= 0:
            raise argparse.ArgumentTypeError(f"must be a positive {kind.__name__}, got '{text}'")
        return value

    return parse


def cmd_bench(args: argparse.Namespace) -> int:
    from .bench import gpu_stages, peak_rss, process_vs_bare, throughput
    from .engines import plan

    options = session_options(args)
    if options.backend != "auto":
        plan(options.backend, options.fp16)  # fail before printing anything if the backend asked for cannot run here
    if options.backend == "tensorrt":
        args.sizes = args.sizes or [(1280, 720), (1920, 1080)]
        print(f"obs-rvm bench: TensorRT, background {options.background.mode}, {args.frames} frames per size, "
              f"median GPU time per stage (CUDA events); targets at 1920x1080 on an RTX 2060 Super class GPU: "
              f"inference+composite <= 4 ms, GPU step <= 8 ms")
        for w, h in args.sizes:
            print(gpu_stages(options, w, h, args.frames, on_status=_status_printer()).line(), flush=True)
    else:
        args.sizes = args.sizes or [(640, 480), (1280, 720)]
        print(f"obs-rvm bench: background {options.background.mode}, {args.frames} frames per size, bare model "
              f"and pipeline alternating frame by frame")
        for w, h in args.sizes:
            print(throughput(options, w, h, args.frames).line(), flush=True)
    if args.clip:
        for w, h in args.sizes:
            print(process_vs_bare(options, args.clip, w, h, args.process_frames, args.preset).line(), flush=True)
    if args.rss_frames:
        w, h = args.sizes[0]
        peaks = peak_rss(options, w, h, args.rss_frames, min(50, args.rss_frames))
        first, last = peaks[min(50, args.rss_frames)], peaks[args.rss_frames]
        print(f"peak RSS {w}x{h}: {first:.0f} MiB after {min(50, args.rss_frames)} frames, {last:.0f} MiB after "
              f"{args.rss_frames} frames ({100 * (last - first) / first:+.1f}%)")
    return 0


def parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must be WIDTHxHEIGHT, got '{text}'") from None
    if w < 1 or h < 1:
        raise argparse.ArgumentTypeError(f"size must be positive, got '{text}'")
    return w, h


def cmd_models(args: argparse.Namespace) -> int:
    from .models import (
        catalog,
        default_model_name,
        download_model,
        fallback_model_name,
        model_dir,
        resolve_model,
        verification_note,
    )

    entries = catalog()
    if args.action == "download":
        names = args.names or [default_model_name()]
        for name in names:
            if name not in entries:
                raise InputError(f"unknown model '{name}': choose one of {', '.join(entries)}")
            if entries[name].bundled:
                print(f"{name}: ships with obs-rvm, nothing to download ({resolve_model(name).path})")
                continue
            path = download_model(entries[name], progress=_download_bar())
            print(f"{name}: {path} ({verification_note(entries[name])})")
        return 0
    print(f"models folder: {model_dir()}")
    roles = {default_model_name(): " (default)", fallback_model_name(): " (used while the default is not downloaded "
                                                                        "and cannot be)"}
    for name, entry in entries.items():
        if entry.bundled:
            state = "present (bundled)"
        else:
            state = "downloaded" if entry.local_path().exists() else "not downloaded"
        size = f"{entry.size / 1e6:.1f} MB" if entry.size else "size unknown"
        print(f"  {name:18} {entry.backbone:12} {entry.precision:19} {size:>12}  {state}{roles.get(name, '')}; "
              f"{verification_note(entry)}")
    return 0


def cmd_engine(args: argparse.Namespace) -> int:
    from .engines.prebuild import EXIT_NO_GPU, VARIANTS, prebuild, unavailable

    reasons = unavailable()
    if reasons:
        print(f"obs-rvm: no TensorRT engine to build here: {'; '.join(reasons)}", file=sys.stderr)
        return EXIT_NO_GPU
    prebuild(args.size, model=args.model, variants=args.background or VARIANTS, fp16=args.fp16,
             ratio=args.downsample, say=lambda m: print(m, flush=True))
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import main as doctor

    return doctor()


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="obs-rvm", description="AI background removal with Robust Video Matting.")
    parser.add_argument("--version", action="version", version=f"obs-rvm {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log what happens under the hood")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("process", help="key a video, image or image sequence into a file",
                       description="Key a video, an image or an image sequence into a file. Decoding, keying and "
                                   "encoding overlap in three threads. Video is written with ffmpeg: .mp4/.mkv/.mov "
                                   "as H.264 (libx264, CRF 18, --preset veryfast), .webm as VP9, transparency as "
                                   "VP9 (.webm), ProRes 4444 (.mov) or FFV1 (.mkv); the decoder runs on one thread, "
                                   "the encoder on one thread where the model runs on the CPU (it takes the cores) "
                                   "and on ffmpeg's choice of threads on a GPU.")
    p.add_argument("input", help="video file, image, folder of images, or pattern like frames/%%05d.png")
    p.add_argument("-o", "--output", required=True,
                   help="video file (.mp4 .mkv .webm .mov) or image pattern like out/%%05d.png")
    p.add_argument("--no-audio", action="store_true", help="do not copy the input's audio")
    p.add_argument("--max-frames", type=int, default=None, metavar="N", help="stop after N frames (a quick preview)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    add_preset_option(p)
    add_pipeline_options(p)
    p.set_defaults(func=cmd_process)

    p = sub.add_parser("demo", help="contact sheet of every background mode (or a live camera window)")
    p.add_argument("input", nargs="?", help="picture to use instead of the bundled sample")
    p.add_argument("-o", "--output", help="where to write the sheet (default ./obs-rvm-demo.png)")
    p.add_argument("--camera", nargs="?", const="/dev/video0", default=None, metavar="DEVICE",
                   help="live window from a camera instead (default /dev/video0)")
    add_pipeline_options(p)
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("camera", help="camera -> AI Background -> virtual camera (v4l2loopback) or a file")
    p.add_argument("-i", "--input", required=True, metavar="DEVICE|FILE",
                   help="camera (/dev/video0, or 0), or a video file played in real time (for tests and demos)")
    p.add_argument("-o", "--output", required=True, metavar="DEVICE|FILE",
                   help="v4l2loopback device (/dev/video10), or a video file / image pattern to record to")
    p.add_argument("-W", "--width", type=positive(int), help="frame width (default: the camera's)")
    p.add_argument("-H", "--height", type=positive(int), help="frame height (default: the camera's)")
    p.add_argument("--fps", type=positive(float), help="output frame rate (default: the input's)")
    p.add_argument("--mirror", action="store_true", help="flip left-right, like a selfie view")
    p.add_argument("--input-format", choices=["auto", "mjpeg", "yuyv"], default="auto",
                   help="camera pixel format (auto: MJPEG if the camera offers it, else YUYV)")
    p.add_argument("--loop", action="store_true", help="loop a file input")
    p.add_argument("--duration", type=positive(float), metavar="SECONDS", help="stop after this much output")
    p.add_argument("--benchmark", action="store_true",
                   help="print per-stage timings every 100 frames")
    p.add_argument("--frame-log", metavar="CSV", help="write which input frame each keyed frame was, and timings")
    add_pipeline_options(p)
    p.set_defaults(func=cmd_camera)

    p = sub.add_parser("bench", help="throughput of the bare model vs the whole pipeline (TensorRT: GPU time per "
                                     "stage), and memory")
    p.add_argument("--sizes", type=parse_size, nargs="+", default=None, metavar="WxH",
                   help="frame sizes (default 640x480 1280x720; with --backend tensorrt 1280x720 1920x1080)")
    p.add_argument("--frames", type=int, default=60, help="timed frames per size (default 60)")
    p.add_argument("--rss-frames", type=int, default=500, help="frames for the memory check (0 skips it)")
    p.add_argument("--clip", metavar="VIDEO", help="also time `obs-rvm process` on this clip, scaled to each size, "
                                                    "vs the pipeline and the bare model on the same frames")
    p.add_argument("--process-frames", type=int, default=150, help="frames of --clip per size (default 150)")
    add_preset_option(p)
    add_pipeline_options(p)
    p.set_defaults(func=cmd_bench)

    p = sub.add_parser("engine", help="pre-build TensorRT engines so the filter starts instantly at these sizes")
    p.add_argument("action", choices=["build"])
    p.add_argument("--size", type=parse_size, nargs="+", action="extend", required=True, metavar="WxH",
                   help="frame sizes, e.g. --size 1280x720 --size 1920x1080")
    p.add_argument("--model", metavar="NAME|PATH", help="catalog model or .onnx file (default: the default model)")
    p.add_argument("--background", choices=("transparent", "replace", "blur"), nargs="+", action="extend",
                   help="graph variants to build (default: all three)")
    p.add_argument("--downsample", type=parse_ratio, default=None, metavar="R",
                   help="RVM downsample ratio (default: auto, as the GPU picks it)")
    p.add_argument("--fp32", dest="fp16", action="store_false", help="build FP32 engines instead of FP16")
    p.set_defaults(func=cmd_engine)

    p = sub.add_parser("doctor", help="check OBS, its Python, the environment, GPU, model and virtual camera")
    p.set_defaults(func=cmd_doctor)

    p = sub.add_parser("models", help="list the model catalog, or download models")
    p.add_argument("action", nargs="?", choices=["list", "download"], default="list")
    p.add_argument("names", nargs="*", help="models to download (default: the default model)")
    p.set_defaults(func=cmd_models)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="obs-rvm: %(message)s")
    try:
        return args.func(args)
    except ObsRvmError as e:
        print(f"obs-rvm: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("obs-rvm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
