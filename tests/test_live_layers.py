"""The live mode's graph variant (layers: background layer in RGB, alpha in A) against the bare model, for every
background mode, and OBS's composite of those layers (the lerp its effect does) against the pipeline's own."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from obs_rvm.backgrounds import BackgroundConfig, blur_sigma
from obs_rvm.matting import MattingSession, SessionOptions

from paths import MODEL
from reference import BareModel, blurred_background, clip_frames, feather_matte, grow_matte, layers

SIZE = (320, 240)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [cv2.resize(f, SIZE, interpolation=cv2.INTER_AREA) for f in clip_frames("again.mkv", 3)]


def run(frames, config: BackgroundConfig, option: bool | None = True, **edges):
    session = MattingSession(SessionOptions(background=config, downsample_ratio=0.5, layers=option, **edges))
    outs = [session.process(f, t=i / 30).copy() for i, f in enumerate(frames)]
    made_layers = session.status.layers
    session.close()
    bare = BareModel(MODEL, 0.5)
    return outs, [bare(f) for f in frames], made_layers


def max_diff(a: np.ndarray, b: np.ndarray) -> int:
    return int(np.abs(a.astype(np.int16) - b.astype(np.int16)).max())


def test_transparent_layers_are_the_alpha(frames):
    outs, refs, made = run(frames, BackgroundConfig("transparent"))
    assert made
    for out, (_, pha) in zip(outs, refs, strict=True):
        assert max_diff(out, layers(pha, None)) <= 2


def test_color_layers(frames):
    outs, refs, _ = run(frames, BackgroundConfig("color", color=(10, 200, 30)))
    h, w = frames[0].shape[:2]
    for out, (_, pha) in zip(outs, refs, strict=True):
        assert max_diff(out, layers(pha, np.broadcast_to(np.array([10, 200, 30]) / 255, (h, w, 3)))) <= 2


def test_blur_layers_carry_the_person_free_background(frames):
    outs, refs, _ = run(frames, BackgroundConfig("blur", blur=60), matte_grow=2, feather=3)
    h, w = frames[0].shape[:2]
    for frame, out, (_, pha) in zip(frames, outs, refs, strict=True):
        refined = feather_matte(grow_matte(pha, 2), 3)
        bg = blurred_background(frame[..., :3] / 255, refined, blur_sigma(60, h, w))
        assert max_diff(out, layers(refined, bg)) <= 2


def test_auto_makes_layers_on_the_cpu_and_default_composites(frames):
    assert run(frames[:1], BackgroundConfig("transparent"), None)[2] is True
    outs, _, made = run(frames[:1], BackgroundConfig("transparent"), False)
    assert made is False and outs[0][..., :3].max() > 100  # the composite carries the person's colours


def test_lerp_of_layers_with_the_same_frame_is_the_composite(frames):
    """What OBS's effect draws (frame * a + layer * (1 - a)) on a still frame is the synchronous composite, up to RVM's
    de-spilled foreground colour standing in for the frame's own (which the live mode cannot have for a newer frame).
    """
    frame = frames[0]
    config = BackgroundConfig("color", color=(0, 0, 255))
    live, _, _ = run([frame], config, True)
    sync, _, _ = run([frame], config, False)
    a = live[0][..., 3:] / 255
    lerp = np.rint(frame[..., :3] * a + live[0][..., :3] * (1 - a))
    diff = np.abs(lerp - sync[0][..., :3])
    assert diff.mean() <= 3 and (diff > 40).mean() <= 0.01
