"""`obs-rvm demo --camera`: the keyed camera in a window, with keys to switch the background.

The capture and inference stages are the virtual camera's (live.LivePipeline); the window is the third stage, on
the main thread because highgui wants it there. Image and video modes without --image/--video use the demo's drawn
backdrops, so every key does something on a fresh install.
"""

from __future__ import annotations

import os
import socket
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np

from ..backgrounds import MODES, BackgroundConfig
from ..demo import checkerboard, sample_backdrop, write_backdrop_video
from ..errors import DeviceError
from ..matting import MattingSession, SessionOptions
from .capture import open_capture
from .stages import LivePipeline

TITLE = "obs-rvm: AI Background (b: next background, 1-5: pick, m: mirror, q: quit)"
KEYS = {ord(str(i + 1)): mode for i, mode in enumerate(MODES)}
QUIT = {ord("q"), ord("Q"), 27}


def x_display_reachable(display: str) -> bool:
    """Is an X server listening for $DISPLAY? (Qt aborts the whole process when it is not.)"""
    host, _, screen = display.rpartition(":")
    number = screen.split(".")[0]
    if not number.isdigit():
        return False
    if host in ("", "unix"):
        for address in (f"/tmp/.X11-unix/X{number}", f"\0/tmp/.X11-unix/X{number}"):
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                try:
                    s.connect(address)
                    return True
                except OSError:
                    continue
        return False
    try:
        socket.create_connection((host, 6000 + int(number)), timeout=1).close()
        return True
    except OSError:
        return False


def require_display() -> None:
    display = os.environ.get("DISPLAY", "")
    if not display:
        raise DeviceError("no display for the preview window ($DISPLAY is not set): run it in a desktop session, or "
                          "record instead: obs-rvm camera -i DEVICE -o out.mp4")
    if not x_display_reachable(display):
        raise DeviceError(f"cannot reach the X display {display}: is the desktop session (or Xvfb) running?")


def _qt_fonts() -> None:
    """The opencv-python wheel points Qt at a font folder it does not ship, and Qt warns about it at every start."""
    current = os.environ.get("QT_QPA_FONTDIR")
    if current and not os.path.isdir(current):
        for folder in ("/usr/share/fonts/truetype/dejavu", "/usr/share/fonts/truetype", "/usr/share/fonts"):
            if os.path.isdir(folder):
                os.environ["QT_QPA_FONTDIR"] = folder
                return


def open_window() -> None:
    _qt_fonts()
    try:
        cv2.namedWindow(TITLE, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO)
    except cv2.error as e:
        raise DeviceError(f"this OpenCV cannot open windows ({e.err.strip()}): pip install opencv-python (not "
                          f"opencv-python-headless)") from None


def preview_backgrounds(base: BackgroundConfig, size: tuple[int, int], folder: Path) -> dict[str, BackgroundConfig]:
    """Every mode, keeping the user's colour, blur, image and video; drawn stand-ins for a missing image/video."""
    w, h = size
    image, video = base.image, base.video
    if not image:
        image = str(folder / "backdrop.png")
        cv2.imwrite(image, cv2.cvtColor(sample_backdrop(h, w), cv2.COLOR_RGB2BGR))
    if not video:
        video = str(folder / "backdrop.avi")
        write_backdrop_video(Path(video), h, w)
    return {mode: replace(base, mode=mode, image=image, video=video) for mode in MODES}


def render(rgba: np.ndarray, transparent: bool, text: str) -> np.ndarray:
    """BGR for imshow: a transparent result over a checkerboard, with a status line."""
    if transparent:
        a = rgba[..., 3:].astype(np.float32) / 255
        rgb = (rgba[..., :3] * a + checkerboard(*rgba.shape[:2]) * (1 - a)).astype(np.uint8)
    else:
        rgb = rgba[..., :3]
    bgr = cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR)
    cv2.rectangle(bgr, (0, 0), (bgr.shape[1], 24), (0, 0, 0), -1)
    cv2.putText(bgr, text, (8, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return bgr


def next_mode(mode: str, key: int) -> str:
    if key in KEYS:
        return KEYS[key]
    if key in (ord("b"), ord("B"), ord(" ")):
        return MODES[(MODES.index(mode) + 1) % len(MODES)]
    return mode


def preview(options: SessionOptions, device: str) -> int:
    require_display()
    capture = open_capture(device)
    session: MattingSession | None = None
    try:
        session = MattingSession(options)
        with tempfile.TemporaryDirectory(prefix="obs-rvm-preview-") as tmp:
            configs = preview_backgrounds(options.background, capture.size, Path(tmp))
            mode = options.background.mode
            session.set_background(configs[mode])
            pipeline = LivePipeline(capture, session)
            pipeline.warm_up()
            open_window()
            pipeline.start()
            _say(f"previewing {capture.describe()} with background {mode}: b or 1-5 switch it, m mirrors, q quits")
            try:
                _loop(pipeline, session, configs, mode)
            finally:
                pipeline.close()
                cv2.destroyAllWindows()
                cv2.waitKey(1)
            pipeline.check()
    finally:
        if session:
            session.close()
        capture.close()
    return 0


def _loop(pipeline: LivePipeline, session: MattingSession, configs: dict[str, BackgroundConfig], mode: str) -> None:
    shown = 0
    while True:
        keyed = pipeline.keyed.take(timeout=0.01)
        if keyed is None and pipeline.keyed.closed:
            return  # the input ended or failed (check() tells which)
        if keyed is not None:
            shown += 1
            record = keyed.record
            fps = len(pipeline.records) / max(1e-6, record.keyed_t - pipeline.t0)
            delay = 1000 * (record.keyed_t - record.capture_t)
            text = f"{mode} | {fps:.1f} fps | {delay:.0f} ms | {session.status.backend}"
            cv2.imshow(TITLE, render(keyed.rgba, mode == "transparent", text))
        key = cv2.waitKey(1) & 0xFF
        if key in QUIT or (shown and cv2.getWindowProperty(TITLE, cv2.WND_PROP_VISIBLE) < 1):
            return
        if key in (ord("m"), ord("M")):
            pipeline.capture.mirror = not pipeline.capture.mirror
            _say(f"mirror {'on' if pipeline.capture.mirror else 'off'}")
        new = next_mode(mode, key)
        if new != mode:
            session.set_background(configs[new])
            mode = new
            _say(f"background: {mode}")


def _say(line: str) -> None:
    print(f"obs-rvm: {line}", file=sys.stderr, flush=True)
