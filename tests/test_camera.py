"""`obs-rvm camera` end to end on real clips (a file stands in for the camera, a file for the loopback device).

Which input frames were keyed is read from the frame log (source frame index per keyed frame); the frames the
camera pipeline kept are then keyed by `obs-rvm process` in the same order, and the pixels must be identical.
"""

from __future__ import annotations

import os
import re
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from processes import ctrl_c_as_in_a_terminal

from obs_rvm.backgrounds import BackgroundConfig, cover
from obs_rvm.cli import main
from obs_rvm.live.camera import CameraConfig, read_frame_log, run_camera
from obs_rvm.live.v4l2 import LoopbackSink
from obs_rvm.matting import SessionOptions
from obs_rvm.video_io import open_source

from paths import CLIPS, REPO

CLIP = CLIPS / "again.mkv"  # 640x480, 30 fps
COLOR = SessionOptions(background=BackgroundConfig("color", color=(0, 177, 64)))


def cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "obs_rvm.cli", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def keyed_by_process(tmp_path: Path, frames: list[np.ndarray], name: str) -> list[np.ndarray]:
    """The frames, in order, through `obs-rvm process` (PNG in, PNG out: nothing lossy on either side)."""
    src, out = tmp_path / f"{name}-in", tmp_path / f"{name}-out"
    src.mkdir()
    for k, rgba in enumerate(frames):
        cv2.imwrite(str(src / f"{k:05d}.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    assert main(["process", str(src), "-o", str(out / "%05d.png"), "-b", "color", "-q"]) == 0
    return [cv2.imread(str(p), cv2.IMREAD_UNCHANGED) for p in sorted(out.glob("*.png"))]


def check_against_process(tmp_path: Path, out_dir: Path, log: Path, transform=lambda rgba: rgba) -> list[dict]:
    rows = read_frame_log(log)
    written = sorted(out_dir.glob("*.png"))
    assert rows and sum(int(r["writes"]) for r in rows) == len(written)
    kept = [int(r["source_index"]) for r in rows]
    assert kept == sorted(set(kept)), "keyed frames must be distinct input frames in order"
    source = list(open_source(str(CLIP)))
    reference = keyed_by_process(tmp_path, [transform(source[i]) for i in kept], "reference")
    assert len(reference) == len(rows)
    compared = 0
    for row, expected in zip(rows, reference, strict=True):
        if row["first_output"] == "":
            continue  # keyed, then replaced by a newer result before the output clock ticked
        first = int(row["first_output"])
        for j in range(first, first + int(row["writes"])):  # repeats are the same frame again
            got = cv2.imread(str(written[j]), cv2.IMREAD_UNCHANGED)
            assert got.shape == expected.shape
            assert np.array_equal(got, expected), f"output frame {j} (input frame {row['source_index']}) differs"
        compared += 1
    assert compared >= 0.8 * len(rows)
    return rows


def test_keyed_frames_are_the_pixels_process_makes_of_the_frames_kept(tmp_path: Path) -> None:
    out_dir, log = tmp_path / "camera", tmp_path / "frames.csv"
    assert main(["camera", "-i", str(CLIP), "-o", str(out_dir / "%05d.png"), "--frame-log", str(log),
                 "-b", "color"]) == 0
    rows = check_against_process(tmp_path, out_dir, log)
    dropped = int(rows[-1]["index"]) + 1 - len(rows)
    print(f"\nkeyed {len(rows)} of {int(rows[-1]['index']) + 1} input frames ({dropped} dropped), all pixel-identical "
          f"to obs-rvm process on the same frames")


def test_size_and_mirror_are_applied_before_keying(tmp_path: Path) -> None:
    out_dir, log = tmp_path / "camera", tmp_path / "frames.csv"
    assert main(["camera", "-i", str(CLIP), "-o", str(out_dir / "%05d.png"), "--frame-log", str(log),
                 "-W", "320", "-H", "200", "--mirror", "--duration", "1.5", "-b", "color"]) == 0
    check_against_process(tmp_path, out_dir, log, lambda rgba: cv2.flip(cover(rgba, 200, 320), 1))


def count_frames(path: Path) -> tuple[int, float]:
    cap = cv2.VideoCapture(str(path))
    frames = 0
    while cap.read()[0]:
        frames += 1
    return frames, cap.get(cv2.CAP_PROP_FPS)


def test_output_clock_holds_the_frame_rate_whatever_the_inference_speed(tmp_path: Path, monkeypatch) -> None:
    """The virtual camera's own writer (YUYV, write(2)) into a plain file: 30 fps out while keying at far less.

    Keying is made slow here (>= 100 ms a frame), so this holds on a GPU too. The writes are checked against the
    clock's own schedule rather than the wall clock's total: a tick is never written early, and one a busy machine
    made late is made up at once, so lateness never accumulates (a clock that slept a period after each write would
    drift a little every tick)."""
    monkeypatch.setenv("OBS_RVM_MIN_INFERENCE_MS", "100")
    raw = tmp_path / "out.yuyv"
    sink = LoopbackSink(os.open(raw, os.O_WRONLY | os.O_CREAT), str(raw), 640, 480)
    result = run_camera(CameraConfig(str(CLIP), str(raw), loop=True, duration=4.0, fps=30), COLOR, log=print,
                        sink=sink)
    period = 1 / 30
    lateness = [t - (result.write_times[0] + i * period) for i, t in enumerate(result.write_times)]
    print(f"\n{result.summary()}\nwrites late by {1000 * statistics.median(lateness):.1f} ms median, "
          f"{1000 * max(lateness):.1f} ms max")
    assert result.written == 120 and len(result.write_times) == 120
    assert raw.stat().st_size == 120 * 640 * 480 * 2
    assert sum(r.writes for r in result.records) == 120
    assert result.keyed <= 0.5 * result.written, "keying must be slower than the output for this test"
    assert min(lateness) > -0.002, "a tick was written before it was due"
    assert statistics.median(lateness) < period / 2, "the output clock drifted behind its schedule"


def test_recording_has_the_target_rate_and_length(tmp_path: Path) -> None:
    out = tmp_path / "out.mkv"
    result = run_camera(CameraConfig(str(CLIP), str(out), loop=True, duration=3.0, fps=25), COLOR, log=print)
    assert result.written == 75
    assert count_frames(out) == (75, 25)
    assert [p.name for p in tmp_path.iterdir()] == ["out.mkv"]


def fast_clip(path: Path, fps: int) -> Path:
    """The test clip's frames re-timed to `fps`, faster than any CPU keys 640x480."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (640, 480))
    for rgba in open_source(str(CLIP)):
        writer.write(cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGR))
    writer.release()
    return path


def test_latency_stays_bounded_when_inference_is_slower_than_the_input(tmp_path: Path, monkeypatch) -> None:
    """Frames are dropped, not queued: the delay never grows beyond about one inference of waiting. Each frame takes
    at least 100 ms to key (OBS_RVM_MIN_INFERENCE_MS), so the 120 fps input outruns the matte on any machine."""
    monkeypatch.setenv("OBS_RVM_MIN_INFERENCE_MS", "100")
    clip = fast_clip(tmp_path / "fast.avi", 120)
    result = run_camera(CameraConfig(str(clip), str(tmp_path / "out" / "%05d.png"), loop=True, duration=5.0,
                                     fps=15), COLOR, log=print)
    latency = result.latencies_ms()
    infer = [r.infer_s for r in result.records]
    print(f"\n{result.summary()}\ninference {1000 * statistics.median(infer):.0f} ms median, "
          f"{1000 * max(infer):.0f} ms max")
    assert min(infer) >= 0.1
    assert result.keyed < result.captured / 2 and result.dropped > result.keyed
    # Waiting for the inference thread (at most one inference), inference, waiting for the output tick (one
    # period) and writing; plus scheduling slack on a shared machine.
    bound = 2 * max(infer) + 2 / 15 + 0.3
    assert max(latency) / 1000 <= bound, f"{max(latency):.0f} ms > {1000 * bound:.0f} ms"
    third = len(latency) // 3
    assert statistics.median(latency[-third:]) <= 1.5 * statistics.median(latency[:third]) + 50


def start_recording(out: Path) -> subprocess.Popen:
    """`obs-rvm camera` looping the clip into `out`, returned once it says it is running."""
    proc = subprocess.Popen([sys.executable, "-m", "obs_rvm.cli", "camera", "-i", str(CLIP), "--loop", "-o",
                             str(out), "-b", "color"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, preexec_fn=ctrl_c_as_in_a_terminal)
    deadline = time.monotonic() + 300
    while "Ctrl-C stops" not in (line := proc.stderr.readline()):
        if not line or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError("the camera did not start")
    return proc


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_ctrl_c_stops_cleanly_and_keeps_the_recording(tmp_path: Path, sig: signal.Signals) -> None:
    out = tmp_path / "out.mkv"
    proc = start_recording(out)
    try:
        time.sleep(3)
        proc.send_signal(sig)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, stderr
    written = int(re.match(r"(\d+) frames to", stdout).group(1))
    assert written >= 30
    assert count_frames(out)[0] == written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mkv"]


def test_a_failing_stage_stops_everything_with_a_clear_error(tmp_path: Path) -> None:
    """The encoder dies mid-run: every stage stops, the partial file goes, one error line, exit code 1."""
    out = tmp_path / "out.mkv"
    proc = start_recording(out)
    try:
        time.sleep(2)
        children = Path(f"/proc/{proc.pid}/task/{proc.pid}/children").read_text().split()
        ffmpeg = [int(c) for c in children if "ffmpeg" in Path(f"/proc/{c}/cmdline").read_text()]
        assert len(ffmpeg) == 1
        os.kill(ffmpeg[0], signal.SIGKILL)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 1, stderr
    assert stderr.strip().splitlines()[-1].startswith(f"obs-rvm: error: ffmpeg stopped while writing {out}")
    assert stdout == ""
    assert list(tmp_path.iterdir()) == []


def error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_missing_camera_is_a_clear_error() -> None:
    if os.path.exists("/dev/video97"):
        pytest.skip("/dev/video97 exists here")
    line = error_line(cli("camera", "-i", "/dev/video97", "-o", "/dev/video98"))
    assert line.startswith("obs-rvm: error: camera /dev/video97 not found")
    line = error_line(cli("camera", "-i", "97", "-o", "/dev/video98"))
    assert line.startswith("obs-rvm: error: camera /dev/video97 not found")
    line = error_line(cli("camera", "-i", "/dev/null", "-o", "/dev/video98"))
    assert line == "obs-rvm: error: /dev/null is not a video (V4L2) device"


def test_missing_loopback_device_is_a_clear_error() -> None:
    if os.path.exists("/dev/video98"):
        pytest.skip("/dev/video98 exists here")
    line = error_line(cli("camera", "-i", str(CLIP), "-o", "/dev/video98"))
    assert line.startswith("obs-rvm: error: /dev/video98 does not exist")
    assert "modprobe v4l2loopback" in line or "v4l2loopback devices here are" in line
    line = error_line(cli("camera", "-i", str(CLIP), "-o", "/dev/null"))
    assert line == "obs-rvm: error: /dev/null is not a video (V4L2) device"
    line = error_line(cli("camera", "-i", str(CLIP), "-o", "/dev/video98", "-b", "transparent"))
    assert "a virtual camera has no transparency" in line
    line = error_line(cli("camera", "-i", str(CLIP), "-o", "/dev/video98", "-W", "641", "-H", "480"))
    assert line == "obs-rvm: error: YUYV needs an even width, got 641: pass -W 642 (or -W 640)"
    line = error_line(cli("camera", "-i", str(CLIP), "-o", "/dev/video98", "-W", "640"))
    assert line == "obs-rvm: error: give both -W and -H, or neither (the camera's own size)"
