"""Build the prepared graph from an RVM ONNX with onnx and onnxsim (see graph.py for what the graph is).

Runs in graph_process.py's child process (and in tools that inspect models): onnx and onnxsim hold the GIL for
seconds and leave their heap behind, which a long-running host must not pay.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from .errors import ModelError
from .fp16 import half_precision_core
from .graph import (
    BACKGROUND,
    BLUR_H,
    BLUR_W,
    FRAME,
    OUTPUT,
    RVM_INPUTS,
    RVM_OUTPUTS,
    STATE_INPUTS,
    STATE_OUTPUTS,
    GraphSpec,
    Variant,
    blur_geometry,
    io_path,
    padded_size,
)
from .paths import atomic_write


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


def build_file(model_path: Path, spec: GraphSpec, path: Path) -> None:
    """Build the graph and write it to `path`, with its input/output table and checksum beside it (`.io.json`)."""
    built = build(load_rvm(model_path), spec)
    data = built.SerializeToString()
    table = {"inputs": _io_json(built.graph.input), "outputs": _io_json(built.graph.output),
             "sha256": hashlib.sha256(data).hexdigest()}
    with atomic_write(io_path(path), "w") as f:
        json.dump(table, f)
    with atomic_write(path) as f:
        f.write(data)


def _io_json(values) -> dict[str, list]:
    return {name: [list(shape), np.dtype(dtype).name] for name, (shape, dtype) in _io_table(values).items()}


def build(model: onnx.ModelProto, spec: GraphSpec) -> onnx.ModelProto:
    """The whole preparation: bake the ratio, fix every shape, simplify, wrap with pre/post-processing."""
    model = _upgrade_opset(model)
    _bake_ratio(model, spec.downsample_ratio)
    hm, wm = padded_size(spec.height, spec.width, spec.downsample_ratio)
    states = _probe_state_shapes(model, hm, wm)
    model = _simplify(model, {"src": [1, 3, hm, wm], **states})
    model = clips_for_constant_bounds(model)
    if spec.fp16:
        model = half_precision_core(model, STATE_OUTPUTS)
    model = _wrap(model, spec, hm, wm)
    if spec.pad_conv_channels:
        model = pad_conv_channels(model)
    return model


def clips_for_constant_bounds(model: onnx.ModelProto) -> onnx.ModelProto:
    """Min/Max of a tensor and a one-element constant become Clip: the same values, bit for bit, much faster.

    Why: the bundled model (converted from TensorFlow) clamps its full-resolution alpha as Max(Min(pha, 1), 0) on a
    [1, H, W, 1] tensor. onnxruntime's CPU Min/Max broadcast the scalar element by element: 2 ms each at 640x480,
    4.2 of a 59 ms frame; Clip is one vectorised pass (measured 1.08x the whole graph's speed). A constant with more
    dimensions than the tensor would broadcast it to a larger shape, so it is left alone.
    """
    graph = model.graph
    constants = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    inferred = onnx.shape_inference.infer_shapes(model).graph
    ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in [*inferred.value_info, *inferred.input]}
    b = _Builder(graph, "obs_rvm/clip")
    for node in graph.node:
        if node.op_type not in ("Min", "Max") or len(node.input) != 2:
            continue
        bounds = [name for name in node.input if name in constants and constants[name].size == 1]
        tensors = [name for name in node.input if name not in bounds]
        if len(bounds) != 1 or len(tensors) != 1 or constants[bounds[0]].ndim > ranks.get(tensors[0], -1):
            continue
        bound = b.const(constants[bounds[0]].reshape(()), "bound")
        inputs = [tensors[0], bound, ""] if node.op_type == "Max" else [tensors[0], "", bound]
        node.op_type = "Clip"
        del node.input[:]
        node.input.extend(inputs)
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    for init in [i for i in graph.initializer if i.name not in used and i.name in constants]:
        graph.initializer.remove(init)
    onnx.checker.check_model(model)
    return model


def pad_conv_channels(model: onnx.ModelProto) -> onnx.ModelProto:
    """Give every Conv with a kernel larger than 1x1 (and one group) an input whose channel count is a multiple of 4.

    Why: onnxruntime's WebGPU provider (0.4.0) computes such Convs wrongly when their input channel count is a
    multiple of 3 but not of 4 (RVM's decoder Conv over 171 channels: alpha off by 56/255 on average), and runs the
    padded ones faster. The input is zero-padded on the channel axis and the weights get as many zero input
    channels, so every output is the same sum with zero terms added: the same maths on every provider.
    """
    graph = model.graph
    weights = {init.name: init for init in graph.initializer}
    b = _Builder(graph, "obs_rvm/conv_pad")  # its own names: the wrapper's builder has used "obs_rvm/..." ones
    nodes: list[onnx.NodeProto] = []
    replaced: set[str] = set()
    for node in graph.node:
        weight = weights.get(node.input[1]) if node.op_type == "Conv" else None
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if weight is None or group != 1 or len(weight.dims) != 4:
            nodes.append(node)
            continue
        channels, kernel = weight.dims[1], weight.dims[2:]
        extra = -channels % 4
        if extra == 0 or kernel[0] * kernel[1] == 1:
            nodes.append(node)
            continue
        w = numpy_helper.to_array(weight)
        padded_w = np.concatenate([w, np.zeros((w.shape[0], extra, *w.shape[2:]), w.dtype)], axis=1)
        x = b.op("Pad", [node.input[0], b.const(np.array([0, 0, 0, 0, 0, extra, 0, 0], np.int64))], hint="padded")
        nodes.extend(b.nodes)
        b.nodes = []
        replaced.add(node.input[1])
        node.input[0] = x
        node.input[1] = b.const(padded_w, "padded_weight")
        nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    for init in [i for i in graph.initializer if i.name in replaced and i.name not in used]:
        graph.initializer.remove(init)
    onnx.checker.check_model(model)
    return model


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

    def __init__(self, graph: onnx.GraphProto, prefix: str = "obs_rvm") -> None:
        self.graph = graph
        self.prefix = prefix
        self.count = 0
        self.nodes: list[onnx.NodeProto] = []

    def name(self, hint: str) -> str:
        self.count += 1
        return f"{self.prefix}/{hint}_{self.count}"

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
