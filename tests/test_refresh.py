"""Matte refresh for the live mode: the still-picture test (real clips, camera-like noise, at least once a second),
the render thread's every-Nth-frame cadence, and the worker skipping still frames on the real model."""

from __future__ import annotations

import itertools
import time

import cv2
import numpy as np
from obs_harness import filter_settings

from obs_rvm.obs.refresh import MAX_SKIP_NS, SETTLE, RefreshCadence, StillDetector
from obs_rvm.obs.worker import Captured, FilterWorker

from reference import clip_frames

FRAME_NS = 33_333_333


def test_still_picture_is_skipped_but_keyed_once_a_second():
    frame = clip_frames("again.mkv", 1)[0]
    rng = np.random.default_rng(0)
    detector = StillDetector()
    keyed = []
    for i in range(90):  # 3 s at 30 fps, with sensor-like noise on every frame
        noisy = np.clip(frame.astype(np.int16) + rng.normal(0, 3, frame.shape), 0, 255).astype(np.uint8)
        if detector.should_key(noisy, i * FRAME_NS):
            keyed.append(i)
    # The first frame and SETTLE more (RVM's state settles on the new picture), then once a second.
    assert keyed[:SETTLE + 1] == list(range(SETTLE + 1)) and len(keyed) == SETTLE + 3, keyed
    assert all(b - a == MAX_SKIP_NS // FRAME_NS + 1 for a, b in itertools.pairwise(keyed[SETTLE:])), keyed
    assert detector.skipped == 90 - len(keyed)


def test_talking_person_keeps_keying_and_motion_wakes_it_at_once():
    frames = clip_frames("again.mkv", 30)
    detector = StillDetector()
    keyed = sum(detector.should_key(f, i * FRAME_NS) for i, f in enumerate(frames))
    assert keyed >= 20, f"a talking person must count as motion on most frames, keyed {keyed} of 30"
    still = StillDetector()
    assert all(still.should_key(frames[0], i * FRAME_NS) for i in range(SETTLE + 1))
    assert not still.should_key(frames[0], (SETTLE + 1) * FRAME_NS)
    moved = frames[0].copy()
    moved[100:160, 200:260] = 255 - moved[100:160, 200:260]  # a hand appears
    assert still.should_key(moved, (SETTLE + 2) * FRAME_NS)


def test_cadence_hands_over_every_nth_frame():
    for every in (1, 2, 3):
        cadence, handed = RefreshCadence(), 0
        for _ in range(90):
            cadence.tick()
            if cadence.due(every):
                cadence.captured()
                handed += 1
        assert handed == 90 // every


def test_worker_skips_still_frames_in_live_mode():
    frame = cv2.resize(clip_frames("again.mkv", 1)[0], (160, 120), interpolation=cv2.INTER_AREA)
    worker = FilterWorker("test", filter_settings(background="transparent", sync="live", skip_still=True))
    try:
        results = []
        for i in range(45):  # 1.5 s of the same picture, handed over as fast as the worker takes it
            worker.submit(Captured(frame, i * FRAME_NS))
            deadline = time.monotonic() + 30
            while worker.status.frames + worker.still.skipped <= i and time.monotonic() < deadline:
                time.sleep(0.002)  # until this frame was keyed or skipped
            if (k := worker.latest()) is not None:
                results.append(k)
        time.sleep(0.3)
        results += [k] if (k := worker.latest()) is not None else []
        assert all(k.layers for k in results)
        again = SETTLE + MAX_SKIP_NS // FRAME_NS + 1
        assert [k.frame_time // FRAME_NS for k in results] == [*range(SETTLE + 1), again], "settle, then 1 s later"
        assert worker.still.skipped == 45 - len(results)
    finally:
        worker.stop()
        assert worker.join(30)
