"""The prepared graph only uses what TensorRT 10's ONNX parser supports, so the GPU runs the very graph the CPU runs.

The rules come from onnx-tensorrt's operator support matrix (docs/operators.md, TensorRT 10.0/10.1 GA) and the
parser's importers: opset 9-20; UINT8 only as a network input or output (cast right away); Resize modes and
coordinate transformations it implements; Clip bounds, Slice axes and Pad pads as initializers; 2D pooling without
dilations. Checked statically on real prepared graphs of every variant, FP32 and FP16, normal and edge-padded.
"""

from __future__ import annotations

import onnx
import pytest
from onnx import TensorProto, helper

from obs_rvm.graph import GraphSpec, Variant, prepare
from obs_rvm.models import resolve_model

# Operators of the support matrix that a prepared RVM graph may contain (a subset of the matrix).
SUPPORTED_OPS = {
    "Add", "AveragePool", "Cast", "Clip", "Concat", "Conv", "Div", "Gemm", "GlobalAveragePool", "HardSigmoid",
    "HardSwish", "MatMul", "Max", "Min", "Mul", "Pad", "ReduceMean", "Relu", "Reshape", "Resize", "Sigmoid", "Slice",
    "Split", "Sub", "Tanh", "Transpose", "Unsqueeze", "Squeeze", "Identity", "ConvTranspose", "Sqrt", "Pow",
    "BatchNormalization", "Flatten", "LeakyRelu", "Shape", "Gather", "Expand", "MaxPool",
}
COMPUTE_TYPES = {TensorProto.FLOAT, TensorProto.FLOAT16, TensorProto.INT64, TensorProto.INT32, TensorProto.BOOL}
RESIZE_COORDINATES = {"half_pixel", "pytorch_half_pixel", "tf_half_pixel_for_nn", "asymmetric", "align_corners"}


def problems(model: onnx.ModelProto) -> list[str]:
    graph = model.graph
    found = []
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if not 9 <= opset <= 20:
        found.append(f"opset {opset} outside TensorRT 10's 9-20")
    inits = {i.name for i in graph.initializer}
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *graph.input, *graph.output]}
    types |= {i.name: i.data_type for i in graph.initializer}
    uint8_io = {v.name for v in [*graph.input, *graph.output] if v.type.tensor_type.elem_type == TensorProto.UINT8}
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        where = f"{node.op_type} {node.name}"
        if node.op_type not in SUPPORTED_OPS:
            found.append(f"{where}: not in TensorRT's ONNX operator support matrix")
        for name in [*node.input, *node.output]:
            if not name:
                continue
            kind = types.get(name)
            if kind == TensorProto.UINT8 and (node.op_type != "Cast" or name not in uint8_io):
                found.append(f"{where}: uint8 tensor {name} is not a network input/output handled by a Cast")
            elif kind is not None and kind not in COMPUTE_TYPES | {TensorProto.UINT8}:
                found.append(f"{where}: tensor {name} has type {TensorProto.DataType.Name(kind)}")
        if node.op_type == "Resize":
            if attrs.get("mode", b"nearest") not in (b"nearest", b"linear"):
                found.append(f"{where}: mode {attrs['mode']}")
            coordinates = attrs.get("coordinate_transformation_mode", b"half_pixel").decode()
            if coordinates not in RESIZE_COORDINATES:
                found.append(f"{where}: coordinate transformation {coordinates}")
            shape_inputs = [n for n in node.input[2:] if n]
            if not shape_inputs or not all(n in inits for n in shape_inputs):
                found.append(f"{where}: scales/sizes must be initializers")
        if node.op_type == "Pad":
            if attrs.get("mode", b"constant") not in (b"constant", b"edge", b"reflect"):
                found.append(f"{where}: mode {attrs['mode']}")
            if node.input[1] not in inits:
                found.append(f"{where}: pads must be an initializer")
        if node.op_type in ("AveragePool", "MaxPool") and (
                len(attrs["kernel_shape"]) != 2 or any(d != 1 for d in attrs.get("dilations", []))):
            found.append(f"{where}: only 2D pooling without dilations")
        if node.op_type == "Clip" and not all(n in inits for n in node.input[1:] if n):
            found.append(f"{where}: bounds must be initializers")
        if node.op_type == "Slice" and not all(n in inits for n in node.input[1:] if n):
            found.append(f"{where}: starts/ends/axes/steps must be initializers")
        if node.op_type == "Gemm":
            ranks = [len(_shape(inferred, graph, n)) for n in node.input[:2]]
            if ranks != [2, 2]:
                found.append(f"{where}: Gemm inputs must be 2D, got ranks {ranks}")
    if not all(o.name in {n.output[0] for n in graph.node if n.op_type == "Cast"} for o in graph.output
               if o.name in uint8_io):
        found.append("a uint8 output is not produced by a Cast")
    return found


def _shape(inferred: onnx.GraphProto, graph: onnx.GraphProto, name: str) -> list[int]:
    for v in [*inferred.value_info, *graph.input, *graph.output]:
        if v.name == name:
            return [d.dim_value for d in v.type.tensor_type.shape.dim]
    init = next(i for i in graph.initializer if i.name == name)
    return list(init.dims)


@pytest.mark.parametrize("variant", list(Variant))
@pytest.mark.parametrize(("width", "height", "ratio", "fp16", "grow", "feather"), [
    (320, 240, 0.5, False, 0, 0), (320, 240, 0.5, True, 0, 0), (40, 30, 0.25, False, 0, 0),
    (320, 240, 0.5, True, -3, 4), (40, 30, 0.25, False, 10, 10)])
def test_prepared_graph_uses_only_what_tensorrt_parses(variant, width, height, ratio, fp16, grow, feather):
    spec = GraphSpec(width, height, ratio, variant, fp16=fp16, matte_grow=grow, feather=feather)
    graph = prepare(resolve_model(None), spec)
    model = onnx.load(str(graph.path))
    assert problems(model) == []
    # The checker itself must notice a violation, or it proves nothing.
    resize = next(n for n in model.graph.node if n.op_type == "Resize")
    next(a for a in resize.attribute if a.name == "mode").s = b"cubic"
    assert any("cubic" in p for p in problems(model))


def test_checker_flags_unsupported_patterns():
    x = helper.make_tensor_value_info("x", TensorProto.UINT8, [1, 1, 4, 4])
    y = helper.make_tensor_value_info("y", TensorProto.UINT8, [1, 1, 4, 4])
    scales = helper.make_tensor("scales", TensorProto.FLOAT, [4], [1, 1, 1, 1])
    nodes = [helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT),
             helper.make_node("Resize", ["xf", "", "scales"], ["r"], mode="cubic"),
             helper.make_node("Pad", ["r", "pads"], ["p"], mode="wrap"),
             helper.make_node("Cast", ["p"], ["y"], to=TensorProto.UINT8)]
    pads = helper.make_tensor_value_info("pads", TensorProto.INT64, [8])
    model = helper.make_model(helper.make_graph(nodes, "bad", [x, pads], [y], [scales]),
                              opset_imports=[helper.make_opsetid("", 19)])
    found = problems(model)
    assert any("Resize" in p and "cubic" in p for p in found)
    assert any("Pad" in p and "wrap" in p for p in found)
    assert any("pads must be an initializer" in p for p in found)
