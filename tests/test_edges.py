"""Edge controls (shrink/grow matte, feather) inside the prepared graph, against a NumPy/OpenCV reference applied
to the bare model's alpha, for the transparent and the composited variants, and through the CLI's options."""

from __future__ import annotations

import argparse

import cv2
import numpy as np
import onnx
import pytest

from obs_rvm.backgrounds import BackgroundConfig
from obs_rvm.cli import add_pipeline_options, session_options
from obs_rvm.graph import GraphSpec, Variant, prepare
from obs_rvm.matting import MattingSession, SessionOptions
from obs_rvm.models import resolve_model

from paths import MODEL
from reference import BareModel, clip_frames, feather_matte, grow_matte, over

SIZE = (320, 240)
TOL = 2  # of 255


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA) for f in clip_frames("again.mkv", 2)]


def keyed(frames, config: BackgroundConfig, grow: int, feather: int):
    session = MattingSession(SessionOptions(background=config, downsample_ratio=0.5, matte_grow=grow,
                                            feather=feather))
    outs = [session.process(f).copy() for f in frames]
    session.close()
    bare = BareModel(MODEL, 0.5)
    return outs, [bare(f) for f in frames]


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


@pytest.mark.parametrize(("grow", "feather"), [(3, 0), (-4, 0), (0, 5), (-2, 3), (10, 10)])
def test_alpha_matches_reference(frames, grow, feather):
    outs, refs = keyed(frames, BackgroundConfig("transparent"), grow, feather)
    for out, (_, pha) in zip(outs, refs, strict=True):
        expected = np.rint(np.clip(feather_matte(grow_matte(pha, grow), feather), 0, 1) * 255)[..., 0]
        assert max_diff(out[..., 3], expected) <= TOL
        # and the control really changed the matte (else the comparison above proves nothing)
        assert max_diff(out[..., 3], np.rint(pha[..., 0] * 255)) > 50


def test_grow_widens_and_shrink_narrows_the_person(frames):
    area = {}
    for grow in (-5, 0, 5):
        outs, _ = keyed(frames[:1], BackgroundConfig("transparent"), grow, 0)
        area[grow] = int((outs[0][..., 3] > 127).sum())
    assert area[-5] < area[0] < area[5]
    assert area[5] - area[0] > 500 and area[0] - area[-5] > 500


def test_composite_uses_the_refined_matte(frames):
    color = (0, 0, 255)
    outs, refs = keyed(frames, BackgroundConfig("color", color=color), -3, 4)
    h, w = frames[0].shape[:2]
    for out, (fgr, pha) in zip(outs, refs, strict=True):
        refined = feather_matte(grow_matte(pha, -3), 4)
        expected = over(fgr, refined, np.broadcast_to(np.array(color) / 255, (h, w, 3)))
        assert max_diff(out, expected) <= TOL


def test_defaults_add_no_node():
    model = resolve_model(None)
    plain = onnx.load(str(prepare(model, GraphSpec(64, 48, 0.5, Variant.TRANSPARENT)).path))
    edged = onnx.load(str(prepare(model, GraphSpec(64, 48, 0.5, Variant.TRANSPARENT, matte_grow=-1,
                                                   feather=1)).path))
    assert not any(n.op_type == "MaxPool" for n in plain.graph.node)
    assert len(edged.graph.node) == len(plain.graph.node) + 8  # pad+pool+pool, two subtractions, pad+conv+conv


def test_out_of_range_is_rejected():
    for bad in ({"matte_grow": 11}, {"matte_grow": -11}, {"feather": -1}, {"feather": 11}):
        with pytest.raises(ValueError, match="px"):
            GraphSpec(64, 48, 0.5, Variant.BLUR, **bad)


def test_cli_options(capsys):
    parser = argparse.ArgumentParser()
    add_pipeline_options(parser)
    options = session_options(parser.parse_args(["--matte-grow", "-3", "--feather", "4"]))
    assert (options.matte_grow, options.feather) == (-3, 4)
    assert (session_options(parser.parse_args([])).matte_grow, session_options(parser.parse_args([])).feather) == (0, 0)
    with pytest.raises(SystemExit):
        parser.parse_args(["--feather", "12"])
    assert "--feather must be a whole number of pixels from 0 to 10, got '12'" in capsys.readouterr().err


def test_obs_settings_carry_and_check_the_edge_controls():
    from obs_harness import filter_settings

    from obs_rvm.errors import InputError

    s = filter_settings(matte_grow=-3, feather=4)
    assert (s.session_options().matte_grow, s.session_options().feather) == (-3, 4)
    with pytest.raises(InputError, match="shrink / grow matte must be -10 to 10 px, got 12"):
        filter_settings(matte_grow=12).check()
    with pytest.raises(InputError, match="feather must be 0 to 10 px"):
        filter_settings(feather=-1).check()


def test_process_command_applies_the_edge_controls(tmp_path):
    """`obs-rvm process --matte-grow --feather` writes what a session with those options makes, edge for edge."""
    import subprocess
    import sys

    from paths import CLIPS

    out = tmp_path / "%04d.png"
    subprocess.run([sys.executable, "-m", "obs_rvm.cli", "process", str(CLIPS / "again.mkv"), "-o", str(out), "-b",
                    "transparent", "--matte-grow", "-3", "--feather", "2", "--max-frames", "2", "-q"], check=True,
                   timeout=300)
    session = MattingSession(SessionOptions(background=BackgroundConfig("transparent"), matte_grow=-3, feather=2))
    plain = MattingSession(SessionOptions(background=BackgroundConfig("transparent")))
    for i, frame in enumerate(clip_frames("again.mkv", 2)):
        got = cv2.imread(str(tmp_path / f"{i:04d}.png"), cv2.IMREAD_UNCHANGED)[..., 3]
        assert max_diff(got, session.process(frame, i / 30)[..., 3]) == 0
        assert max_diff(got, plain.process(frame, i / 30)[..., 3]) > 50
