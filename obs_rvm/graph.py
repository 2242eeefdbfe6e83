"""Turn any RVM ONNX (official I/O) into the one static graph that every backend runs.

The prepared graph takes the frame as OBS hands it (uint8 RGBA, H x W) and returns the keyed frame in the same
layout, with RVM, pre-processing and compositing inside. TensorRT builds an engine from it and onnxruntime runs it
as-is, so CPU and GPU, CLI and OBS compute the very same maths. Recurrent states are explicit inputs/outputs
(`r1i..r4i` -> `r1o..r4o`) so the caller feeds them back.

Ops are ordered for TensorRT: uint8 tensors are cast right at the inputs and right before the output, and the
float->uint8 cast gets +0.5 first because TensorRT truncates (as onnxruntime does), so both round alike.
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
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import ModelError
from .fp16 import half_precision_core
from .models import ModelFile
from .paths import atomic_write, cache_dir

GRAPH_VERSION = 5
"""Bump whenever the wrapper changes meaning (5: FP16 graphs); together with the hash of this file and of fp16.py it
keys every graph and engine cache, so an edited wrapper can never be served from a stale cache."""
_SOURCE_HASH = hashlib.sha256(Path(__file__).read_bytes() + (Path(__file__).parent / "fp16.py").read_bytes()
                              ).hexdigest()[:16]

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
    """RVM's recurrent core in float16 (see fp16.py): what TensorRT's FP16 path builds. onnxruntime runs float32."""
    matte_grow: int = 0
    """Grow (> 0) or shrink (< 0) the matte by this many pixels of the frame (a square max/min filter)."""
    feather: int = 0
    """Soften the matte's edge over about this many pixels (a separable Gaussian, sigma = feather / 2)."""
    layers: bool = False
    """Output the layers instead of the composite: RGB = the background layer (colour, picture, video frame or the
    person-free blur; black for TRANSPARENT), A = the alpha. OBS's live mode composites them on its GPU with the
    current video frame, so the video runs at OBS's frame rate while the matte follows at the inference rate."""

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


def _io_table(values) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    table = {}
    for v in values:
        t = v.type.tensor_type
        table[v.name] = (tuple(d.dim_value for d in t.shape.dim), helper.tensor_dtype_to_np_dtype(t.elem_type))
    return table


def load_rvm(path: Path) -> onnx.ModelProto:
    """Load an ONNX file and check it has RVM's official inputs and outputs, with errors a user can act on."""
    try:
        model = onnx.load(str(path))
    except FileNotFoundError as e:
        raise ModelError(f"model file not found: {path}") from e
    except Exception as e:  # protobuf raises DecodeError and friends for truncated or non-ONNX files
        raise ModelError(f"{path} is not a readable ONNX model (corrupt or truncated download?): delete it and "
                         f"download it again ({type(e).__name__})") from e
    names_in = [i.name for i in model.graph.input]
    names_out = [o.name for o in model.graph.output]
    missing = [n for n in RVM_INPUTS if n not in names_in] + [n for n in RVM_OUTPUTS if n not in names_out]
    if missing or not model.graph.node:
        raise ModelError(f"{path} is not a Robust Video Matting model: missing {', '.join(missing) or 'nodes'} "
                         f"(expected inputs {', '.join(RVM_INPUTS)} and outputs {', '.join(RVM_OUTPUTS)})")
    return model


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


def build_file(model_path: Path, spec: GraphSpec, path: Path) -> None:
    """Build the graph and write it to `path`, with its input/output table and checksum beside it (`.io.json`)."""
    built = build(load_rvm(model_path), spec)
    data = built.SerializeToString()
    table = {"inputs": _io_json(built.graph.input), "outputs": _io_json(built.graph.output),
             "sha256": hashlib.sha256(data).hexdigest()}
    with atomic_write(_io_path(path), "w") as f:
        json.dump(table, f)
    with atomic_write(path) as f:
        f.write(data)


def graph_key(model_sha256: str, spec: GraphSpec) -> str:
    fields = {"model": model_sha256, "graph_version": GRAPH_VERSION, "source": _SOURCE_HASH, **asdict(spec),
              "variant": spec.variant.value}
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:32]


def _io_path(path: Path) -> Path:
    return path.with_suffix(".io.json")


def _io_json(values) -> dict[str, list]:
    return {name: [list(shape), np.dtype(dtype).name] for name, (shape, dtype) in _io_table(values).items()}


def _describe(path: Path, spec: GraphSpec, model_sha256: str) -> PreparedGraph:
    """The graph's I/O from its sidecar table, once the file's checksum matches (a damaged file raises).

    Parsing the whole ONNX file instead would hold the GIL for no reason; hashing releases it.
    """
    table = json.loads(_io_path(path).read_text())
    if hashlib.sha256(path.read_bytes()).hexdigest() != table["sha256"]:
        raise ValueError(f"{path} does not match its checksum")

    def io(part: str) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        return {name: (tuple(shape), np.dtype(dtype)) for name, (shape, dtype) in table[part].items()}

    return PreparedGraph(path, spec, model_sha256, io("inputs"), io("outputs"))


def build(model: onnx.ModelProto, spec: GraphSpec) -> onnx.ModelProto:
    """The whole preparation: bake the ratio, fix every shape, simplify, wrap with pre/post-processing."""
    model = _upgrade_opset(model)
    _bake_ratio(model, spec.downsample_ratio)
    hm, wm = padded_size(spec.height, spec.width, spec.downsample_ratio)
    states = _probe_state_shapes(model, hm, wm)
    model = _simplify(model, {"src": [1, 3, hm, wm], **states})
    if spec.fp16:
        model = half_precision_core(model, STATE_OUTPUTS)
    return _wrap(model, spec, hm, wm)


def _upgrade_opset(model: onnx.ModelProto) -> onnx.ModelProto:
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    if opset >= 12:
        return model
    from onnx import version_converter

    return version_converter.convert_version(model, 12)


def _bake_ratio(model: onnx.ModelProto, ratio: float) -> None:
    # TensorRT needs the ratio as a constant: it decides every internal shape.
    graph = model.graph
    ratio_input = next(i for i in graph.input if i.name == "downsample_ratio")
    dtype = helper.tensor_dtype_to_np_dtype(ratio_input.type.tensor_type.elem_type)
    graph.input.remove(ratio_input)
    graph.initializer.append(numpy_helper.from_array(np.array([ratio], dtype=dtype), "downsample_ratio"))


def _probe_state_shapes(model: onnx.ModelProto, height: int, width: int) -> dict[str, list[int]]:
    """Run the model once on zeros to learn the recurrent state shapes for this size (no formula to get wrong)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
    types = {i.name: i.type for i in session.get_inputs()}
    dtype = np.float16 if "float16" in types["src"] else np.float32
    feeds = {"src": np.zeros((1, 3, height, width), dtype)}
    feeds |= {name: np.zeros((1, 1, 1, 1), np.float16 if "float16" in types[name] else np.float32)
              for name in STATE_INPUTS}
    shapes = session.run(list(STATE_OUTPUTS), feeds)
    return {i: list(s.shape) for i, s in zip(STATE_INPUTS, shapes, strict=True)}


def _simplify(model: onnx.ModelProto, shapes: dict[str, list[int]]) -> onnx.ModelProto:
    import onnxsim

    simplified, ok = onnxsim.simplify(model, overwrite_input_shapes=shapes)
    if not ok:
        raise ModelError("onnxsim could not verify the simplified model; this model variant is not supported")
    return simplified


class _Builder:
    """Appends nodes and constants to a graph under a private name prefix."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        self.graph = graph
        self.count = 0
        self.nodes: list[onnx.NodeProto] = []

    def name(self, hint: str) -> str:
        self.count += 1
        return f"obs_rvm/{hint}_{self.count}"

    def const(self, value: np.ndarray, hint: str = "const") -> str:
        name = self.name(hint)
        self.graph.initializer.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], hint: str | None = None, output: str | None = None, **attrs) -> str:
        out = output or self.name(hint or op_type.lower())
        self.nodes.append(helper.make_node(op_type, inputs, [out], name=self.name(op_type), **attrs))
        return out

    def scalar(self, value: float) -> str:
        return self.const(np.array(value, np.float32))

    def slice(self, x: str, starts: list[int], ends: list[int], axes: list[int]) -> str:
        return self.op("Slice", [x, self.const(np.array(starts, np.int64)), self.const(np.array(ends, np.int64)),
                                 self.const(np.array(axes, np.int64))])

    def reshape(self, x: str, shape: list[int]) -> str:
        return self.op("Reshape", [x, self.const(np.array(shape, np.int64))])

    def planes_from_pixels(self, x: str, h: int, w: int, channels: int, keep: int) -> str:
        """uint8 [H,W,channels] input -> float [1,keep,H,W] in 0..1, dropping the trailing channels.

        One Gemm does layout change, channel selection and scaling (a Transpose + Slice + Mul in three passes costs
        more on the CPU). The cast comes first because TensorRT only casts uint8 tensors.
        """
        select = np.eye(keep, channels, dtype=np.float32) / 255
        x = self.reshape(self.op("Cast", [x], to=TensorProto.FLOAT), [h * w, channels])
        return self.reshape(self.op("Gemm", [self.const(select), x], transB=1), [1, keep, h, w])

    def pixels_from_planes(self, x: str, h: int, w: int, channels: int, bias: list[float], output: str) -> None:
        """float [1,channels,H,W] in 0..1 -> uint8 [H,W,4] output, rounded; `bias` adds per output channel.

        Gemm does layout change, scaling to 0..255 and the +0.5 of rounding in one pass; Cast then truncates, which
        is what TensorRT does too, so both backends round the same way. A constant alpha of 255 comes from the
        bias alone when `channels` is 3.
        """
        scale = 255 * np.eye(channels, 4, dtype=np.float32)
        x = self.reshape(x, [channels, h * w])
        x = self.op("Gemm", [x, self.const(scale), self.const(np.array(bias, np.float32) + 0.5)], transA=1)
        x = self.op("Clip", [x, self.scalar(0.0), self.scalar(255.5)])
        self.op("Cast", [self.reshape(x, [h, w, 4])], output=output, to=TensorProto.UINT8)


def _wrap(model: onnx.ModelProto, spec: GraphSpec, hm: int, wm: int) -> onnx.ModelProto:
    graph = model.graph
    h, w = spec.height, spec.width
    b = _Builder(graph)
    src_input = next(i for i in graph.input if i.name == "src")
    model_dtype = src_input.type.tensor_type.elem_type
    graph.input.remove(src_input)

    # Pre-processing: uint8 RGBA [H,W,4] -> RVM's src [1,3,Hm,Wm] in 0..1.
    x = b.planes_from_pixels(FRAME, h, w, 4, 3)
    src = x
    if (hm, wm) != (h, w):
        pads = np.array([0, 0, 0, 0, 0, 0, hm - h, wm - w], np.int64)
        src = b.op("Pad", [src, b.const(pads)], mode="edge")
    b.op("Cast", [src], output="src", to=model_dtype)
    rvm_nodes = list(graph.node)  # pre-processing must come before RVM's own nodes (topological order)
    del graph.node[:]
    graph.node.extend(b.nodes + rvm_nodes)
    b.nodes = []

    # RVM's outputs, back in float32 and cropped to the frame.
    fgr, pha = _take_output(graph, b, "fgr"), _take_output(graph, b, "pha")
    if (hm, wm) != (h, w):
        fgr = b.slice(fgr, [0, 0], [h, w], [2, 3])
        pha = b.slice(pha, [0, 0], [h, w], [2, 3])
    pha = _refine_matte(b, pha, spec.matte_grow, spec.feather)

    # Compositing, then back to uint8 RGBA [H,W,4].
    if spec.layers:
        _layers_output(b, x, pha, spec.variant, h, w)
    elif spec.variant is Variant.TRANSPARENT:
        b.pixels_from_planes(b.op("Concat", [fgr, pha], axis=1), h, w, 4, [0, 0, 0, 0], OUTPUT)
    else:
        if spec.variant is Variant.REPLACE:
            bg = b.planes_from_pixels(BACKGROUND, h, w, 3, 3)
        else:
            bg = _blurred_background(b, x, pha, h, w)
        # fgr*a + bg*(1-a), written as bg + a*(fgr-bg): one multiply fewer. Alpha is opaque (255).
        rgb = b.op("Add", [bg, b.op("Mul", [pha, b.op("Sub", [fgr, bg])])], hint="composite")
        b.pixels_from_planes(rgb, h, w, 3, [0, 0, 0, 255], OUTPUT)
    graph.node.extend(b.nodes)

    graph.input.insert(0, helper.make_tensor_value_info(FRAME, TensorProto.UINT8, [h, w, 4]))
    if spec.variant is Variant.REPLACE:
        graph.input.append(helper.make_tensor_value_info(BACKGROUND, TensorProto.UINT8, [h, w, 3]))
    if spec.variant is Variant.BLUR:
        geo = blur_geometry(h, w)
        graph.input.append(helper.make_tensor_value_info(BLUR_H, TensorProto.FLOAT, [geo.height, geo.height]))
        graph.input.append(helper.make_tensor_value_info(BLUR_W, TensorProto.FLOAT, [geo.width, geo.width]))
    for name in ("fgr", "pha"):
        graph.output.remove(next(o for o in graph.output if o.name == name))
    graph.output.insert(0, helper.make_tensor_value_info(OUTPUT, TensorProto.UINT8, [h, w, 4]))
    graph.name = f"obs_rvm {spec.variant.value} {w}x{h} r={spec.downsample_ratio}{' fp16' if spec.fp16 else ''}"
    graph.name += " layers" if spec.layers else ""
    del graph.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    onnx.checker.check_model(model)
    return model


def _take_output(graph: onnx.GraphProto, b: _Builder, name: str) -> str:
    """Make an RVM output internal and return it as float32."""
    out = next(o for o in graph.output if o.name == name)
    if out.type.tensor_type.elem_type == TensorProto.FLOAT:
        return name
    return b.op("Cast", [name], to=TensorProto.FLOAT)


def _blurred_background(b: _Builder, x: str, pha: str, h: int, w: int) -> str:
    """Blur of the frame's own background (x, 0..1), weighted by (1 - alpha) so the person does not bleed into it.

    Normalised convolution at reduced resolution: bg = (B(x*w) + eps*B(x)) / (B(w) + eps) with w = 1 - alpha and B a
    separable blur given as two matrices (inputs, so the strength changes without rebuilding anything). eps keeps the
    result defined where the person covers the whole neighbourhood (there alpha is ~1 and bg barely shows).
    """
    geo = blur_geometry(h, w)
    eps = b.scalar(1e-3)
    # pool(x*(1-a)) = pool(x) - pool(x*a) and pool(1-a) = 1 - pool(a): the subtractions happen on the small grid.
    parts = [b.op("Mul", [x, pha]), pha, x]
    if geo.factor > 1:  # pool each part on its own: cheaper than pooling a full-size concat
        pads = [0, 0, geo.height * geo.factor - h, geo.width * geo.factor - w]
        parts = [b.op("AveragePool", [p], kernel_shape=[geo.factor] * 2, strides=[geo.factor] * 2, pads=pads,
                      count_include_pad=0) for p in parts]
    x_pha, pha_low, x_low = parts
    num = b.op("Sub", [x_low, x_pha])
    den = b.op("Sub", [b.scalar(1.0), pha_low])
    stack = b.op("Concat", [num, den, x_low], axis=1)
    stack = b.op("MatMul", [BLUR_H, stack])
    stack = b.op("MatMul", [stack, BLUR_W])
    num = b.slice(stack, [0], [3], [1])
    den = b.slice(stack, [3], [4], [1])
    plain = b.slice(stack, [4], [7], [1])
    num = b.op("Add", [num, b.op("Mul", [plain, eps])])
    low = b.op("Div", [num, b.op("Add", [den, eps])], hint="blurred_low")
    if geo.factor == 1:
        return low
    empty = b.const(np.zeros(0, np.float32))  # roi and scales: required (if empty) before opset 13
    return b.op("Resize", [low, empty, empty, b.const(np.array([1, 3, h, w], np.int64))],
                mode="linear", coordinate_transformation_mode="half_pixel")


def _layers_output(b: _Builder, x: str, pha: str, variant: Variant, h: int, w: int) -> None:
    """The live mode's output: uint8 RGBA [H,W,4] with the background layer in RGB and the alpha in A."""
    if variant is Variant.TRANSPARENT:  # alpha alone, into A: one Gemm with a [1, 4] scale (RGB stays 0)
        a = b.op("Gemm", [b.reshape(pha, [1, h * w]), b.const(np.array([[0, 0, 0, 255]], np.float32)),
                          b.const(np.array([0.5] * 4, np.float32))], transA=1)
        a = b.op("Clip", [a, b.scalar(0.0), b.scalar(255.5)])
        b.op("Cast", [b.reshape(a, [h, w, 4])], output=OUTPUT, to=TensorProto.UINT8)
        return
    bg = b.planes_from_pixels(BACKGROUND, h, w, 3, 3) if variant is Variant.REPLACE else _blurred_background(
        b, x, pha, h, w)
    b.pixels_from_planes(b.op("Concat", [bg, pha], axis=1), h, w, 4, [0, 0, 0, 0], OUTPUT)


def feather_taps(feather: int) -> np.ndarray:
    """The normalised 1-D Gaussian the feather applies along each axis: sigma = feather / 2, radius = feather."""
    offsets = np.arange(-feather, feather + 1, dtype=np.float64)
    taps = np.exp(-0.5 * (offsets / (feather / 2)) ** 2)
    return (taps / taps.sum()).astype(np.float32)


def _refine_matte(b: _Builder, pha: str, grow: int, feather: int) -> str:
    """Edge controls on the alpha [1,1,H,W]: grow/shrink (morphology), then feather (blur). 0 adds no node at all.

    Both are separable (a row pass, then a column pass) and edge-padded first, so the frame's border acts as if the
    picture went on (a person cut by the bottom edge stays opaque there) and the passes need no padding of their own.
    Shrinking is 1 - grow(1 - a). Only Pad, MaxPool, Conv and Sub: all in TensorRT 10's ONNX parser.
    """
    if grow:
        r = abs(grow)
        x = pha if grow > 0 else b.op("Sub", [b.scalar(1.0), pha])
        x = b.op("Pad", [x, b.const(np.array([0, 0, r, r, 0, 0, r, r], np.int64))], mode="edge")
        x = b.op("MaxPool", [x], kernel_shape=[1, 2 * r + 1], strides=[1, 1])
        x = b.op("MaxPool", [x], kernel_shape=[2 * r + 1, 1], strides=[1, 1])
        pha = x if grow > 0 else b.op("Sub", [b.scalar(1.0), x])
    if feather:
        r = feather
        taps = feather_taps(feather)
        x = b.op("Pad", [pha, b.const(np.array([0, 0, r, r, 0, 0, r, r], np.int64))], mode="edge")
        x = b.op("Conv", [x, b.const(taps.reshape(1, 1, 1, -1))], kernel_shape=[1, 2 * r + 1])
        pha = b.op("Conv", [x, b.const(taps.reshape(1, 1, -1, 1))], kernel_shape=[2 * r + 1, 1], hint="feathered")
    return pha
