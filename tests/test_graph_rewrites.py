"""Rewrites of RVM's own graph during preparation: same values, faster ops."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import onnxruntime as ort
from onnx import TensorProto, helper, numpy_helper

from obs_rvm.graph import STATE_INPUTS, GraphSpec, Variant, padded_size, prepare
from obs_rvm.graph_build import (
    _bake_ratio,
    _probe_state_shapes,
    _simplify,
    _upgrade_opset,
    clips_for_constant_bounds,
    load_rvm,
)
from obs_rvm.models import resolve_model

from clips import clip_frames


def _run(model: onnx.ModelProto, feeds: dict[str, np.ndarray]) -> list[np.ndarray]:
    options = ort.SessionOptions()
    options.log_severity_level = 3
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, feeds)


def _bounded(model: onnx.ModelProto) -> list[str]:
    """Min/Max nodes with a one-element constant operand: what the rewrite turns into Clip."""
    constants = {i.name for i in model.graph.initializer if int(np.prod(i.dims)) == 1}
    return [n.name for n in model.graph.node if n.op_type in ("Min", "Max") and constants & set(n.input)]


def test_min_max_of_a_constant_become_clip_and_compute_the_same_bits():
    """RVM's own graph at a small size, the recurrent state carried over 6 real frames: every output, state
    included, is identical bit for bit, and no Min/Max with a constant bound is left."""
    height, width, ratio = 120, 160, 0.5
    model = _upgrade_opset(load_rvm(resolve_model(None).path))
    _bake_ratio(model, ratio)
    hm, wm = padded_size(height, width, ratio)
    states = _probe_state_shapes(model, hm, wm)
    plain = _simplify(model, {"src": [1, 3, hm, wm], **states})
    assert len(_bounded(plain)) >= 2, "the bundled model clamps its alpha with Min and Max"
    rewritten = clips_for_constant_bounds(copy.deepcopy(plain))
    assert _bounded(rewritten) == []
    clips = [sum(n.op_type == "Clip" for n in m.graph.node) for m in (plain, rewritten)]
    assert clips[1] >= clips[0] + 2

    carried = [{name: np.zeros(states[name], np.float32) for name in STATE_INPUTS} for _ in range(2)]
    for rgba in clip_frames(6, width, height):
        src = np.zeros((1, 3, hm, wm), np.float32)
        src[0, :, :height, :width] = rgba[..., :3].transpose(2, 0, 1) / 255
        results = [_run(m, {"src": src, **state}) for m, state in zip((plain, rewritten), carried, strict=True)]
        for a, b in zip(*results, strict=True):
            assert a.dtype == b.dtype and np.array_equal(a, b)
        names = [o.name for o in plain.graph.output]
        carried = [{i: r[names.index(i.replace("i", "o"))] for i in STATE_INPUTS} for r in results]


def test_a_bound_that_would_broadcast_the_tensor_is_left_alone():
    """Min(x[2,3], c[1,1,1]) is [1,2,3]: a Clip would keep [2,3], so that node stays a Min."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2, 3])
    z = helper.make_tensor_value_info("z", TensorProto.FLOAT, [2, 3])
    graph = helper.make_graph(
        [helper.make_node("Min", ["x", "wide"], ["y"], name="wide_min"),
         helper.make_node("Max", ["one", "x"], ["z"], name="scalar_max")],
        "bounds", [x], [y, z],
        [numpy_helper.from_array(np.full((1, 1, 1), 0.5, np.float32), "wide"),
         numpy_helper.from_array(np.array([0.25], np.float32), "one")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    feeds = {"x": np.array([[0.0, 0.3, 0.6], [1.0, -1.0, 0.25]], np.float32)}
    before = _run(model, feeds)
    rewritten = clips_for_constant_bounds(copy.deepcopy(model))
    assert [n.op_type for n in rewritten.graph.node] == ["Min", "Clip"]
    after = _run(rewritten, feeds)
    assert after[0].shape == (1, 2, 3)
    for a, b in zip(before, after, strict=True):
        assert np.array_equal(a, b)


def test_prepared_graphs_have_no_min_max_left():
    graph = prepare(resolve_model(None), GraphSpec(160, 120, 0.5, Variant.BLUR, layers=True))
    assert _bounded(onnx.load(str(graph.path))) == []
