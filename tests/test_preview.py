"""`obs-rvm demo --camera`: the live preview window, under a real X server (Xvfb), driven with real key presses."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from obs_rvm.live.preview import render

from paths import CLIPS, REPO

LONG_CLIP = CLIPS / "one-by-one-person-detection.mp4"  # 139 s: plenty of time to press keys


def demo(*args: str, env: dict[str, str] | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "obs_rvm.cli", "demo", "--camera", *args], capture_output=True,
                          text=True, timeout=timeout, cwd=REPO, env=env)


@pytest.fixture(scope="module")
def xvfb() -> Iterator[str]:
    """A private X server; yields its DISPLAY."""
    if not shutil.which("Xvfb"):
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    read, write = os.pipe()
    proc = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write)
    with os.fdopen(read) as f:
        number = f.readline().strip()
    assert number, "Xvfb did not start"
    yield f":{number}"
    proc.terminate()
    proc.wait(timeout=10)


def with_display(display: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    if display:
        env["DISPLAY"] = display
    return env


def error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 1, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_no_display_is_a_clear_error() -> None:
    line = error_line(demo(env=with_display(None)))
    assert line.startswith("obs-rvm: error: no display for the preview window ($DISPLAY is not set)")


def test_unreachable_display_is_a_clear_error_not_a_qt_abort() -> None:
    number = next(n for n in range(87, 200) if not Path(f"/tmp/.X11-unix/X{n}").exists())
    line = error_line(demo(env=with_display(f":{number}")))
    assert line == f"obs-rvm: error: cannot reach the X display :{number}: is the desktop session (or Xvfb) running?"


def test_no_camera_is_a_clear_error(xvfb: str) -> None:
    if os.path.exists("/dev/video97"):
        pytest.skip("/dev/video97 exists here")
    line = error_line(demo("/dev/video97", env=with_display(xvfb)))
    assert line.startswith("obs-rvm: error: camera /dev/video97 not found")


def test_preview_shows_a_clip_to_its_end(xvfb: str) -> None:
    result = demo(str(CLIPS / "thanks.mkv"), env=with_display(xvfb))
    assert result.returncode == 0, result.stderr
    assert (f"obs-rvm: previewing {CLIPS / 'thanks.mkv'} 640x480 30 fps with background blur: b or 1-5 switch it, "
            f"m mirrors, q quits") in result.stderr.splitlines()
    assert "error" not in result.stderr.lower()


def test_keys_switch_the_background_mirror_and_quit(xvfb: str) -> None:
    if not shutil.which("xdotool"):
        pytest.skip("xdotool is not installed (apt-get install xdotool)")
    env = with_display(xvfb)
    proc = subprocess.Popen([sys.executable, "-m", "obs_rvm.cli", "demo", "--camera", str(LONG_CLIP), "-b", "blur"],
                            cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: list[str] = []

    def expect(text: str) -> None:
        deadline = time.monotonic() + 120
        while not (lines and text in lines[-1]):
            line = proc.stderr.readline()
            assert line and time.monotonic() < deadline, f"expected '{text}', got {lines}"
            lines.append(line.strip())

    def press(key: str) -> None:
        window = subprocess.run(["xdotool", "search", "--sync", "--name", "obs-rvm"], env=env, capture_output=True,
                                text=True, timeout=30, check=True).stdout.split()[0]
        subprocess.run(["xdotool", "windowfocus", "--sync", window], env=env, timeout=30, check=True)
        subprocess.run(["xdotool", "key", key], env=env, timeout=30, check=True)

    try:
        expect("previewing")
        press("2")
        expect("background: color")
        press("b")
        expect("background: image")
        press("m")
        expect("mirror on")
        press("q")
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
        proc.communicate()


def test_render_shows_transparency_over_a_checkerboard() -> None:
    rgba = np.zeros((40, 60, 4), np.uint8)
    rgba[..., 0] = 200
    rgba[:, 30:, 3] = 255  # right half opaque red, left half fully transparent
    bgr = render(rgba, transparent=True, text="x")
    assert (bgr[30:, 40:] == (0, 0, 200)).all()
    assert set(np.unique(bgr[30:, :30])) == {153, 204}  # the checkerboard's two greys
    assert (render(rgba, transparent=False, text="x")[30:, :30] == (0, 0, 200)).all()
