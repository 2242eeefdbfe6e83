"""The one static graph every backend runs: what it is (GraphSpec), where it is cached, and how to get it.

The prepared graph takes the frame as OBS hands it (uint8 RGBA, H x W) and returns the keyed frame in the same
layout, with RVM, pre-processing and compositing inside. TensorRT builds an engine from it and onnxruntime runs it
as-is, so CPU and GPU, CLI and OBS compute the very same maths. Recurrent states are explicit inputs/outputs
(`r1i..r4i` -> `r1o..r4o`) so the caller feeds them back.

Ops are ordered for TensorRT: uint8 tensors are cast right at the inputs and right before the output, and the
float->uint8 cast gets +0.5 first because TensorRT truncates (as onnxruntime does), so both round alike.

Building it (graph_build.py, with onnx and onnxsim) happens in a child process (graph_process.py); this module
imports neither, so a host that only runs cached graphs (OBS) never loads protobuf.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path

import numpy as np

from .models import ModelFile
from .paths import cache_dir

GRAPH_VERSION = 6
"""Bump whenever the wrapper changes meaning (5: FP16 graphs, 6: Clip for Min/Max); together with the hash of the
files that build it (this one, graph_build.py, fp16.py) it keys every graph and engine cache, so an edited wrapper can
never be served from a stale cache."""
_SOURCE_HASH = hashlib.sha256(b"".join((Path(__file__).parent / name).read_bytes()
                                       for name in ("graph.py", "graph_build.py", "fp16.py"))).hexdigest()[:16]

RVM_INPUTS = ("src", "r1i", "r2i", "r3i", "r4i", "downsample_ratio")
RVM_OUTPUTS = ("fgr", "pha", "r1o", "r2o", "r3o", "r4o")
STATE_INPUTS = ("r1i", "r2i", "r3i", "r4i")
STATE_OUTPUTS = ("r1o", "r2o", "r3o", "r4o")
FRAME, OUTPUT, BACKGROUND, BLUR_H, BLUR_W = "frame", "output", "background", "blur_h", "blur_w"

MAX_GROW, MAX_FEATHER = 10, 10
"""Edge controls, in pixels of the frame: shrink/grow -10..+10, feather 0..10."""

MIN_LOWRES_SIDE = 16
"""RVM's guided-filter refiner fails below a few pixels at the low resolution: smaller frames are padded."""


class Variant(str, Enum):
    """What the graph composites. Colour, image and video backgrounds share REPLACE: the background is an input,
    so changing the colour or the picture never rebuilds a graph or a TensorRT engine."""

    TRANSPARENT = "transparent"
    REPLACE = "replace"
    BLUR = "blur"


@dataclass(frozen=True)
class GraphSpec:
    width: int
    height: int
    downsample_ratio: float
    variant: Variant
    fp16: bool = False
    """RVM's recurrent core in float16 (see fp16.py): what TensorRT's and TensorRT-RTX's FP16 paths run. The other
    onnxruntime providers run float32."""
    matte_grow: int = 0
    """Grow (> 0) or shrink (< 0) the matte by this many pixels of the frame (a square max/min filter)."""
    feather: int = 0
    """Soften the matte's edge over about this many pixels (a separable Gaussian, sigma = feather / 2)."""
    layers: bool = False
    """Output the layers instead of the composite: RGB = the background layer (colour, picture, video frame or the
    person-free blur; black for TRANSPARENT), A = the alpha. OBS's live mode composites them on its GPU with the
    current video frame, so the video runs at OBS's frame rate while the matte follows at the inference rate."""
    pad_conv_channels: bool = False
    """Zero-pad the input channels of Convs with kernels larger than 1x1 to a multiple of 4 (graph_build.py): the
    same maths, which onnxruntime's WebGPU provider computes wrongly without it."""

    def __post_init__(self) -> None:
        if self.width < 1 or self.height < 1:
            raise ValueError(f"frame size must be positive, got {self.width}x{self.height}")
        if not 0 < self.downsample_ratio <= 1:
            raise ValueError(f"downsample ratio must be in (0, 1], got {self.downsample_ratio}")
        if not -MAX_GROW <= self.matte_grow <= MAX_GROW:
            raise ValueError(f"matte grow/shrink must be {-MAX_GROW}..{MAX_GROW} px, got {self.matte_grow}")
        if not 0 <= self.feather <= MAX_FEATHER:
            raise ValueError(f"feather must be 0..{MAX_FEATHER} px, got {self.feather}")


@dataclass(frozen=True)
class BlurGeometry:
    """The reduced grid the blur runs on: `factor` x `factor` blocks averaged into a (height, width) image."""

    factor: int
    height: int
    width: int


def blur_geometry(height: int, width: int) -> BlurGeometry:
    # About 256 px on the long side: a wide blur costs the same at 720p and 4K.
    factor = max(1, round(max(height, width) / 256))
    return BlurGeometry(factor, math.ceil(height / factor), math.ceil(width / factor))


def padded_size(height: int, width: int, ratio: float) -> tuple[int, int]:
    """Model-side frame size: the frame itself unless it is too small for RVM at this ratio (then edge-padded)."""
    need = math.ceil(MIN_LOWRES_SIDE / ratio)
    return max(height, need), max(width, need)


@dataclass
class PreparedGraph:
    """A prepared graph on disk, and what an engine needs to know to feed it."""

    path: Path
    spec: GraphSpec
    model_sha256: str
    inputs: dict[str, tuple[tuple[int, ...], np.dtype]]
    outputs: dict[str, tuple[tuple[int, ...], np.dtype]]

    @property
    def cache_key(self) -> str:
        return self.path.stem

    @property
    def state_inputs(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        return {name: self.inputs[name] for name in STATE_INPUTS}


def prepare(model: ModelFile, spec: GraphSpec, cancel: threading.Event | None = None) -> PreparedGraph:
    """Return the prepared graph for this model and spec, building and caching it on first use.

    The build runs in a child process (graph_process.py): it would otherwise hold the GIL for seconds and leave
    its heap behind in a long-running host such as OBS. Setting `cancel` ends a build in flight (Cancelled).
    """
    from .graph_process import build_in_child

    key = graph_key(model.sha256, spec)
    path = cache_dir("graphs") / f"{key}.onnx"
    if path.exists():
        try:
            return _describe(path, spec, model.sha256)
        except Exception:
            path.unlink(missing_ok=True)  # a damaged cache entry is rebuilt, never fatal
    build_in_child(model.path, {**asdict(spec), "variant": spec.variant.value}, path, cancel)
    return _describe(path, spec, model.sha256)


def graph_key(model_sha256: str, spec: GraphSpec) -> str:
    fields = {"model": model_sha256, "graph_version": GRAPH_VERSION, "source": _SOURCE_HASH, **asdict(spec),
              "variant": spec.variant.value}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def io_path(path: Path) -> Path:
    return path.with_suffix(".io.json")


def _describe(path: Path, spec: GraphSpec, model_sha256: str) -> PreparedGraph:
    """The graph's I/O from its sidecar table, once the file's checksum matches (a damaged file raises).

    Parsing the whole ONNX file instead would hold the GIL for no reason; hashing releases it.
    """
    table = json.loads(io_path(path).read_text())
    if hashlib.sha256(path.read_bytes()).hexdigest() != table["sha256"]:
        raise ValueError(f"{path} does not match its checksum")

    def io(part: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        return {name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in table[part].items()}

    return PreparedGraph(path, spec, model_sha256, io("inputs"), io("outputs"))
