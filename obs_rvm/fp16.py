"""Half precision for RVM's recurrent core: what the GPU's FP16 path runs.

TensorRT 11 removed the FP16 builder flag (and 10.12 deprecated it): networks are strongly typed, so precision comes
from the graph's own tensor types. The prepared graph therefore carries float16 itself, and TensorRT 10 and 11 build
the same thing from it.

Not everything may be float16. RVM's refiner (a guided filter) computes variances as E[x^2] - E[x]^2 and divides by
them; in float16 that cancels catastrophically (alpha errors of 233/255 on the test clips). The split is structural,
not by node names: every node the recurrent state outputs depend on (encoder and recurrent decoder, where the time
goes) runs in float16; the output head and the refiner, which only feed `fgr`/`pha`, stay float32. Graph inputs and
outputs keep their types, so an engine feeds FP16 and FP32 graphs alike.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

FLOAT_ONLY_INPUTS = {("Resize", 1), ("Resize", 2), ("Upsample", 1)}
"""(op, input index) that stay float32: Resize's scales must be float32 (roi may be, and TensorRT ignores it)."""
NEVER_HALF = {"Constant", "ConstantOfShape", "If", "Loop", "Scan"}
"""Ops whose float outputs come from attributes or subgraphs: they stay float32 and their consumers cast."""
SUFFIX = "/fp16"


def ancestors(graph: onnx.GraphProto, outputs: Iterable[str]) -> set[int]:
    """Indices of the nodes that `outputs` depend on."""
    producer = {name: i for i, node in enumerate(graph.node) for name in node.output}
    seen: set[int] = set()
    stack = list(outputs)
    while stack:
        i = producer.get(stack.pop())
        if i is None or i in seen:
            continue
        seen.add(i)
        stack.extend(graph.node[i].input)
    return seen


def half_precision_core(model: onnx.ModelProto, core_outputs: Iterable[str]) -> onnx.ModelProto:
    """Run the nodes that `core_outputs` depend on in float16, everything else as it was (float32), with Casts at
    the boundaries. Returns a new model; the input is left untouched."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True).graph
    dtype = {v.name: v.type.tensor_type.elem_type for v in [*inferred.value_info, *graph.input, *graph.output]}
    initializers = {init.name: init for init in graph.initializer}
    dtype |= {name: init.data_type for name, init in initializers.items()}
    half = {i for i in ancestors(graph, core_outputs) if graph.node[i].op_type not in NEVER_HALF}
    produced_half = {name for i in half for name in graph.node[i].output if dtype.get(name) == TensorProto.FLOAT}

    nodes: list[onnx.NodeProto] = []
    made: set[str] = set()

    def cast(src: str, dst: str, to: int) -> str:
        if dst not in made:
            made.add(dst)
            nodes.append(helper.make_node("Cast", [src], [dst], name=dst, to=to))
        return dst

    def as_half(name: str) -> str:
        if name in produced_half:
            return name + SUFFIX
        if name in initializers:
            if name + SUFFIX not in made:
                made.add(name + SUFFIX)
                values = numpy_helper.to_array(initializers[name]).astype(np.float16)
                graph.initializer.append(numpy_helper.from_array(values, name + SUFFIX))
            return name + SUFFIX
        return cast(name, name + SUFFIX, TensorProto.FLOAT16)

    def as_float(name: str) -> str:
        # The cast back restores the original name, so float consumers and graph outputs need no renaming.
        return cast(name + SUFFIX, name, TensorProto.FLOAT) if name in produced_half else name

    for i, node in enumerate(list(graph.node)):
        for k, name in enumerate(node.input):
            if not name or dtype.get(name) != TensorProto.FLOAT:
                continue
            in_half = i in half and (node.op_type, k) not in FLOAT_ONLY_INPUTS
            node.input[k] = as_half(name) if in_half else as_float(name)
        if i in half:
            for attr in node.attribute:
                if node.op_type == "Cast" and attr.name == "to" and attr.i == TensorProto.FLOAT:
                    attr.i = TensorProto.FLOAT16
            for k, name in enumerate(node.output):
                if name in produced_half:
                    node.output[k] = name + SUFFIX
        nodes.append(node)
    for out in graph.output:
        as_float(out.name)

    del graph.node[:]
    graph.node.extend(nodes)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]
    return model
