"""The prepared graph and the matting session against independent references, on the real RVM model."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from obs_rvm.backgrounds import BackgroundConfig, blur_sigma
from obs_rvm.errors import InputError
from obs_rvm.graph import GraphSpec, Variant, prepare
from obs_rvm.matting import MattingSession, SessionOptions, auto_downsample_ratio
from obs_rvm.models import resolve_model

from paths import ASTRONAUT, MODEL
from reference import BareModel, blurred_background, clip_frames, over, transparent

FRAMES = 4


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return clip_frames("again.mkv", FRAMES)


def astronaut_rgba(size: tuple[int, int] | None = None) -> np.ndarray:
    rgba = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGBA)
    return rgba if size is None else cv2.resize(rgba, size, interpolation=cv2.INTER_AREA)


def run_both(config: BackgroundConfig, frames: list[np.ndarray], ratio: float | None = None):
    """Pipeline outputs and the bare model's (fgr, pha) for the same frames, each carrying its own state."""
    session = MattingSession(SessionOptions(background=config, downsample_ratio=ratio))
    outs = [session.process(f, t=i / 30).copy() for i, f in enumerate(frames)]
    bare = BareModel(MODEL, session.status.downsample_ratio)
    refs = [bare(f) for f in frames]
    session.close()
    return outs, refs


def assert_close(out: np.ndarray, ref: np.ndarray, tol: int = 2) -> None:
    assert out.shape == ref.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(np.int16) - ref.astype(np.int16)).max(axis=(0, 1))
    assert (diff <= tol).all(), f"max abs difference per channel {diff.tolist()} exceeds {tol}"


def test_transparent_matches_reference(frames):
    outs, refs = run_both(BackgroundConfig("transparent"), frames)
    for out, (fgr, pha) in zip(outs, refs):
        assert_close(out, transparent(fgr, pha))


def test_color_matches_reference(frames):
    color = (12, 200, 99)
    outs, refs = run_both(BackgroundConfig("color", color=color), frames)
    h, w = frames[0].shape[:2]
    for out, (fgr, pha) in zip(outs, refs):
        assert_close(out, over(fgr, pha, np.broadcast_to(np.array(color) / 255, (h, w, 3))))


def test_image_matches_reference(frames, tmp_path):
    h, w = frames[0].shape[:2]
    picture = np.random.default_rng(1).integers(0, 256, (h, w, 3), np.uint8)  # frame-sized: no scaling involved
    path = tmp_path / "bg.png"
    cv2.imwrite(str(path), cv2.cvtColor(picture, cv2.COLOR_RGB2BGR))
    outs, refs = run_both(BackgroundConfig("image", image=str(path)), frames)
    for out, (fgr, pha) in zip(outs, refs):
        assert_close(out, over(fgr, pha, picture / 255))


def test_video_matches_reference_and_loops(frames, tmp_path):
    h, w = frames[0].shape[:2]
    path = tmp_path / "bg.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (w, h))
    for color in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]:
        writer.write(np.full((h, w, 3), color, np.uint8))
    writer.release()
    cap = cv2.VideoCapture(str(path))
    decoded = [cv2.cvtColor(cap.read()[1], cv2.COLOR_BGR2RGB) for _ in range(3)]
    outs, refs = run_both(BackgroundConfig("video", video=str(path)), frames)
    for i, (out, (fgr, pha)) in enumerate(zip(outs, refs)):  # t = i/30 at 30 fps: frame i of the clip, looping
        assert_close(out, over(fgr, pha, decoded[i % 3] / 255))
    assert len(frames) > 3, "the clip must be longer than the background video to exercise looping"


def test_blur_matches_reference(frames):
    outs, refs = run_both(BackgroundConfig("blur", blur=70), frames)
    h, w = frames[0].shape[:2]
    for frame, out, (fgr, pha) in zip(frames, outs, refs):
        bg = blurred_background(frame[..., :3] / 255, pha, blur_sigma(70, h, w))
        assert_close(out, over(fgr, pha, bg))


def test_blur_keeps_person_out_of_background(frames):
    """The blurred background is weighted by 1-alpha: where the person stands, their colours must not leak."""
    frame = frames[-1]
    _, refs = run_both(BackgroundConfig("blur", blur=100), frames)
    pha = refs[-1][1]
    h, w = frame.shape[:2]
    weighted = blurred_background(frame[..., :3] / 255, pha, blur_sigma(100, h, w))
    plain = cv2.GaussianBlur(frame[..., :3].astype(np.float32) / 255, (0, 0), blur_sigma(100, h, w))
    ring = (pha[..., 0] < 0.05) & (cv2.dilate((pha[..., 0] > 0.5).astype(np.uint8), np.ones((25, 25))) > 0)
    assert ring.sum() > 500, "the clip must show a person with background around them"
    # Near the person, plain blur mixes in the person's colours; the weighted one stays closer to the real wall.
    wall = frame[..., :3][ring] / 255
    assert np.abs(weighted[ring] - wall).mean() < np.abs(plain[ring] - wall).mean()


def test_person_kept_background_removed():
    session = MattingSession(SessionOptions(background=BackgroundConfig("transparent")))
    frame = astronaut_rgba()
    for _ in range(3):
        out = session.process(frame)
    alpha = out[..., 3] / 255
    assert alpha[60:150, 180:270].mean() >= 0.8, "face"
    # Top corners and bottom-right are background; the bottom-left corner is the astronaut's arm.
    for corner in (alpha[:40, :40], alpha[:40, -40:], alpha[-40:, -40:]):
        assert corner.mean() <= 0.05


def test_recurrent_state_is_fed_back(frames):
    """Frame N differs from a fresh session's frame N, and equals a hand-written loop feeding r*o back as r*i."""
    config = BackgroundConfig("transparent")
    outs, refs = run_both(config, frames)
    for out, (fgr, pha) in zip(outs, refs):
        assert_close(out, transparent(fgr, pha))
    fresh = MattingSession(SessionOptions(background=config)).process(frames[-1])
    changed = np.abs(fresh.astype(np.int16) - outs[-1].astype(np.int16))
    assert changed.max() > 20 and changed.mean() > 0.05, "with state fed back, frame N must differ from a fresh run"


def test_state_resets_on_scene_cut_and_resolution_change(frames):
    session = MattingSession(SessionOptions(background=BackgroundConfig("transparent")))
    for f in frames:
        session.process(f)
    assert session.status.resets == 0, "consecutive frames of one clip are not a scene cut"
    astronaut = astronaut_rgba((frames[0].shape[1], frames[0].shape[0]))
    session.process(astronaut)
    assert session.status.resets == 1, "a different picture is a hard cut"
    # After a cut the output equals a fresh session's (state zeroed), to the bit.
    fresh = MattingSession(SessionOptions(background=BackgroundConfig("transparent")))
    np.testing.assert_array_equal(session.process(frames[0]), fresh.process(frames[0]))
    # A new resolution gets its own engine and a clean state too.
    small = cv2.resize(frames[0], (320, 240))
    np.testing.assert_array_equal(session.process(small), fresh.process(small))


@pytest.mark.parametrize("size", [(641, 479), (1, 1), (2, 3), (7, 5), (33, 17)])
def test_awkward_sizes_come_out_at_their_own_size(size):
    w, h = size
    frame = astronaut_rgba((w, h))
    session = MattingSession(SessionOptions(background=BackgroundConfig("color", color=(0, 0, 255))))
    out = session.process(frame)
    assert out.shape == (h, w, 4) and out.dtype == np.uint8
    assert (out[..., 3] == 255).all()
    if size == (641, 479):  # big enough to check the matte itself
        transparent_out = MattingSession(SessionOptions(background=BackgroundConfig("transparent"))).process(frame)
        alpha = transparent_out[..., 3] / 255
        face = alpha[int(60 * h / 512):int(150 * h / 512), int(180 * w / 512):int(270 * w / 512)]
        assert face.mean() >= 0.8 and alpha[:30, -30:].mean() <= 0.05


def test_odd_size_matches_bare_model():
    frame = astronaut_rgba((641, 479))
    outs, refs = run_both(BackgroundConfig("transparent"), [frame, frame], ratio=0.5)
    for out, (fgr, pha) in zip(outs, refs):
        assert_close(out, transparent(fgr, pha))


def test_auto_downsample_ratio_follows_rvm_guidance():
    assert auto_downsample_ratio(720, 1280, gpu=True) == 0.375
    assert auto_downsample_ratio(1080, 1920, gpu=True) == 0.25
    assert auto_downsample_ratio(2160, 3840, gpu=True) == 0.125
    assert auto_downsample_ratio(2, 2, gpu=False) == 1.0
    for h, w in [(480, 640), (720, 1280), (1080, 1920)]:
        assert 160 <= max(h, w) * auto_downsample_ratio(h, w, gpu=False) <= 320


def test_prepared_graph_is_cached_and_a_damaged_cache_is_rebuilt():
    model = resolve_model()
    spec = GraphSpec(96, 64, 0.5, Variant.TRANSPARENT)
    first = prepare(model, spec)
    stamp = first.path.stat().st_mtime_ns
    assert prepare(model, spec).path.stat().st_mtime_ns == stamp, "second prepare must reuse the cache"
    first.path.write_bytes(b"not an onnx file")
    again = prepare(model, spec)
    assert again.path.stat().st_size > 1_000_000 and again.inputs["frame"][0] == (64, 96, 4)


def test_bad_frames_are_rejected_clearly():
    session = MattingSession(SessionOptions(background=BackgroundConfig("transparent")))
    with pytest.raises(InputError, match="uint8 RGBA"):
        session.process(np.zeros((10, 10, 3), np.uint8))
    with pytest.raises(InputError, match="uint8 RGBA"):
        session.process(np.zeros((10, 10, 4), np.float32))
