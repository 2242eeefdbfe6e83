"""The WebGPU provider keys like the CPU, and the graph transform that makes it do so keeps the maths.

onnxruntime-ep-webgpu 0.4.0 computes a Conv with a kernel larger than 1x1 wrongly when its input channel count is a
multiple of 3 but not of 4 (RVM's decoder has one over 171 channels): out of the box its alpha is off by tens of
levels on every frame. The graph prepared for WebGPU therefore pads such Convs to a multiple of 4 channels with zeros
(graph_build.pad_conv_channels). The first test checks on the CPU provider, everywhere, that the padding changes no
result; the second keys real frames with WebGPU where an adapter exists (Debian testing's Mesa lavapipe in
scripts/obs_matrix.sh's forky root: software, so ORT_WEBGPU_EP_ALLOW_SOFTWARE_ADAPTER=1 in a child process of its
own) and compares them with the CPU provider's, and checks that without the padding they do not match, so a
provider that fixes its Conv (or a transform that stops applying) is noticed.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import site
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from obs_rvm.backgrounds import BackgroundConfig
from obs_rvm.graph import FRAME, OUTPUT, STATE_INPUTS, STATE_OUTPUTS, GraphSpec, Variant, prepare
from obs_rvm.matting import MattingSession, SessionOptions
from obs_rvm.models import resolve_model

import clips

WIDTH, HEIGHT, RATIO = 160, 120, 0.5
"""Small frames: lavapipe runs WebGPU on two CPU cores at ~0.2 s a frame of this size."""
CHILD = Path(__file__).with_name("provider_child.py")
CANNOT_RUN = 4


def _padded_convs(model: onnx.ModelProto) -> dict[str, tuple[int, int]]:
    """Conv output name -> (input channels, kernel size) for the Convs pad_conv_channels must pad."""
    weights = {i.name: i for i in model.graph.initializer}
    found = {}
    for node in model.graph.node:
        if node.op_type != "Conv" or node.input[1] not in weights:
            continue
        dims = weights[node.input[1]].dims
        group = next((a.i for a in node.attribute if a.name == "group"), 1)
        if group == 1 and len(dims) == 4 and dims[2] * dims[3] > 1:
            found[node.output[0]] = (dims[1], dims[2] * dims[3])
    return found


def _session_with_outputs(model: onnx.ModelProto, extra: list[str]) -> ort.InferenceSession:
    model = onnx.ModelProto.FromString(model.SerializeToString())
    model.graph.output.extend(onnx.ValueInfoProto(name=name) for name in extra)
    options = ort.SessionOptions()
    options.log_severity_level = 3
    # The same kernels for both graphs: with graph optimisations on, onnxruntime lays out Convs whose channel counts
    # are multiples of 4 or 8 differently (NCHWc), which reorders the sums and changes the odd float in its 5th digit.
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def test_conv_channel_padding_keeps_the_maths():
    """Padded and plain graphs on the CPU provider, 8 real frames with the state carried: every padded Conv's output,
    RVM's fgr and alpha and the recurrent state agree within 1e-5, so the keyed frames differ at most by a rounding
    step where a value sits on a .5 boundary."""
    spec = GraphSpec(WIDTH, HEIGHT, RATIO, Variant.TRANSPARENT, feather=2)
    model = resolve_model(None)
    plain = prepare(model, spec)
    padded = prepare(model, replace(spec, pad_conv_channels=True))
    assert padded.path != plain.path, "the padding is part of the graph's cache key"
    assert padded.inputs == plain.inputs and padded.outputs == plain.outputs
    plain_proto, padded_proto = onnx.load(str(plain.path)), onnx.load(str(padded.path))

    before, after = _padded_convs(plain_proto), _padded_convs(padded_proto)
    assert before.keys() == after.keys()
    changed = [name for name, (channels, _) in before.items() if channels % 4]
    assert len(changed) >= 5, "RVM's stem, its four decoder Convs (171, 107, 59, 35 channels) and the feather"
    assert any(before[name][0] == 171 for name in changed), "the Conv WebGPU computes wrongly is among them"
    assert all(after[name][0] == before[name][0] + (-before[name][0] % 4) for name in before)
    pads = [n for n in padded_proto.graph.node if n.op_type == "Pad" and n.name.startswith("obs_rvm/conv_pad/")]
    assert len(pads) == len(changed)
    weights = {i.name: numpy_helper.to_array(i) for i in padded_proto.graph.initializer}
    for node in padded_proto.graph.node:
        if node.op_type == "Conv" and node.output[0] in changed:
            w = weights[node.input[1]]
            channels = before[node.output[0]][0]
            assert not w[:, channels:].any(), "the added input channels have zero weights"

    compared = [*changed, "fgr", "pha"]
    sessions = [_session_with_outputs(p, compared) for p in (plain_proto, padded_proto)]
    states = [{name: np.zeros(shape, dtype) for name, (shape, dtype) in plain.state_inputs.items()} for _ in sessions]
    names = [OUTPUT, *STATE_OUTPUTS, *compared]
    for frame in clips.clip_frames(8, WIDTH, HEIGHT):
        results = []
        for i, session in enumerate(sessions):
            out = dict(zip(names, session.run(names, {FRAME: frame, **states[i]}), strict=True))
            states[i] = {s: out[o] for s, o in zip(STATE_INPUTS, STATE_OUTPUTS, strict=True)}
            results.append(out)
        for name in names[1:]:
            np.testing.assert_allclose(results[1][name], results[0][name], rtol=1e-5, atol=1e-5, err_msg=name)
        keyed = np.abs(results[1][OUTPUT].astype(np.int16) - results[0][OUTPUT])
        assert keyed.max() <= 1 and (keyed > 0).mean() < 1e-3, "at most a rounding step, at the odd pixel"


def _frames(tmp_path: Path, count: int) -> tuple[Path, np.ndarray]:
    frames = np.stack(list(clips.clip_frames(count, WIDTH, HEIGHT)))
    path = tmp_path / "frames.npy"
    np.save(path, frames)
    return path, frames


def _key_with_webgpu(frames: Path, out: Path, *args: str) -> dict:
    """Key the frames with the WebGPU backend in a child process that may use a software adapter."""
    env = {**os.environ, "ORT_WEBGPU_EP_ALLOW_SOFTWARE_ADAPTER": "1"}
    result = subprocess.run([sys.executable, str(CHILD), "webgpu", str(frames), str(out), "--ratio", str(RATIO), *args],
                            env=env, cwd=CHILD.parent, capture_output=True, text=True, timeout=600)
    if result.returncode == CANNOT_RUN:
        pytest.skip(f"no WebGPU adapter here: {result.stderr.strip().splitlines()[-1]}")
    assert result.returncode == 0, result.stderr[-3000:]
    with np.load(out) as data:
        return {"keyed": data["keyed"], "described": str(data["described"]), "seconds": float(data["seconds"])}


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("onnxruntime_ep_webgpu") is None,
                    reason="onnxruntime-ep-webgpu not installed (pip install 'obs-rvm[webgpu]')")
def test_webgpu_keys_real_frames_like_the_cpu(tmp_path):
    path, frames = _frames(tmp_path, 8)
    webgpu = _key_with_webgpu(path, tmp_path / "webgpu.npz")
    options = SessionOptions(background=BackgroundConfig(mode="transparent"), downsample_ratio=RATIO, backend="cpu",
                             scene_cut=0, layers=False)
    cpu = MattingSession(options)
    try:
        want = np.stack([cpu.process(frame, 0.0).copy() for frame in frames]).astype(np.int16)
    finally:
        cpu.close()
    assert webgpu["described"].startswith("onnxruntime on WebGPU ("), webgpu["described"]
    diff = np.abs(webgpu["keyed"].astype(np.int16) - want)
    alpha, rgb = diff[..., 3], diff[..., :3]
    print(f"WebGPU ({webgpu['described']}): {webgpu['seconds'] * 1000:.0f} ms a {WIDTH}x{HEIGHT} frame; "
          f"|alpha - CPU| mean {alpha.mean():.4f} max {alpha.max()}, |fgr - CPU| mean {rgb.mean():.4f} max {rgb.max()}")
    # The FP32 tolerance TensorRT is held to (test_tensorrt_gpu.py): at most one level anywhere.
    assert alpha.max() <= 1 and rgb.max() <= 1 and alpha.mean() < 0.01

    unpadded = _key_with_webgpu(path, tmp_path / "unpadded.npz", "--unpadded")
    wrong = np.abs(unpadded["keyed"].astype(np.int16) - want)[..., 3]
    print(f"without the padding: |alpha - CPU| mean {wrong.mean():.2f} max {wrong.max()}")
    assert wrong.mean() > 10, ("WebGPU without the channel padding now matches the CPU: the provider's Conv may be "
                               "fixed, and pad_conv_channels could go")


@pytest.mark.obs
@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("onnxruntime_ep_webgpu") is None,
                    reason="onnxruntime-ep-webgpu not installed (pip install 'obs-rvm[webgpu]')")
@pytest.mark.skipif(not (shutil.which("obs") and shutil.which("Xvfb")), reason="needs OBS Studio and Xvfb")
def test_obs_filter_keys_with_webgpu(tmp_path):
    """The filter in a real OBS with backend webgpu: it says it keys on WebGPU (the Status line reads the same
    description) and the picture OBS draws is the CPU pipeline's composite."""
    import cv2
    from obs_harness import Obs, ObsConfig, ai_filter, image_input, reference, similar

    from obs_rvm.obs.settings import rgb_to_obs_color

    from paths import ASTRONAUT

    path, _ = _frames(tmp_path, 1)
    _key_with_webgpu(path, tmp_path / "probe.npz")  # skips, with the reason, where WebGPU has no adapter
    picture = tmp_path / "person.png"
    cv2.imwrite(str(picture), cv2.resize(cv2.imread(str(ASTRONAUT)), (WIDTH, HEIGHT), interpolation=cv2.INTER_AREA))
    values = {"background": "color", "color": rgb_to_obs_color((0, 0, 255)), "downsample_ratio": RATIO,
              "sync": "sync"}
    repo = Path(__file__).resolve().parent.parent
    config = ObsConfig(
        script=repo / "obs_rvm" / "obs_script.py",
        site_packages=[Path(p) for p in site.getsitepackages()],
        inputs=[image_input("Person", picture, [ai_filter("AI", backend="webgpu", **values)])],
        env={"ORT_WEBGPU_EP_ALLOW_SOFTWARE_ADAPTER": "1"}, canvas=(WIDTH, HEIGHT),
    )
    rgba = cv2.cvtColor(cv2.imread(str(picture)), cv2.COLOR_BGR2RGBA)
    expected = reference(rgba, **{**values, "backend": "cpu"})
    with Obs(config, tmp_path / "obs") as o:
        found = o.wait_log(r"'AI' on 'Person': keying \d+x\d+ with (.*?), model", 300)
        assert found.group(1).startswith("onnxruntime on WebGPU ("), found.group(0)
        o.wait_for(lambda: similar(o.screenshot("Person"), expected), 120, "the CPU pipeline's composite")
