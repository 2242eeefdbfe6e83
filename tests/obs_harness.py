"""Drive a real OBS Studio for tests and benchmarks: Xvfb, an isolated profile, a generated scene collection that
loads a given obs_script.py, obs-websocket 5 on 127.0.0.1, clean shutdown and the OBS log.

Reusable outside this test suite (the installer's tests run the installed layout through it): pass the script to
load and where its dependencies are, either as site-packages folders (OBS_RVM_SITE_PACKAGES) or as the installer's
environment.json contents, or neither to let the script find them itself.

    with Obs(ObsConfig(script=..., site_packages=[...], inputs=[image_input("Cam", png, [ai_filter("AI")])]),
             workdir) as o:
        o.client.get_stats(); o.screenshot("Cam"); o.wait_log(r"keying")
    assert o.returncode == 0
"""

from __future__ import annotations

import base64
import contextlib
import functools
import json
import logging
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

FILTER_ID = "obs_rvm_ai_background"
T = TypeVar("T")


@dataclass
class FilterSpec:
    name: str
    settings: dict = field(default_factory=dict)
    kind: str = FILTER_ID
    enabled: bool = True


@dataclass
class InputSpec:
    name: str
    kind: str
    settings: dict
    filters: Sequence[FilterSpec] = ()
    in_scene: bool = True


def ai_filter(name: str = "AI Background", enabled: bool = True, **settings) -> FilterSpec:
    return FilterSpec(name, settings, enabled=enabled)


def filter_settings(**values):
    """The FilterSettings a filter with these (websocket/JSON) settings runs: OBS layers them over the defaults."""
    from obs_rvm.obs import settings as keys

    merged = {**keys.defaults(), **values}
    return keys.parse(lambda k: str(merged[k]), lambda k: int(merged[k]), lambda k: float(merged[k]),
                      lambda k: bool(merged[k]))


REFERENCE_FRAMES = 40
"""RVM's recurrent state settles on a still picture within this many frames."""


def reference(frame: np.ndarray, model: str | None = None, **values) -> np.ndarray:
    """What the pipeline itself makes of this frame with these filter settings, once RVM's state has settled: the
    composite (live video's own layers are what OBS mixes with the frame, not something a user sees)."""
    from dataclasses import replace

    from obs_rvm.matting import MattingSession

    options = filter_settings(**{**values, "sync": "sync"}).session_options()
    session = MattingSession(replace(options, model=model) if model else options)
    for i in range(REFERENCE_FRAMES):
        out = session.process(frame, i / 30)
    session.close()
    return out.copy()


def similar(a: np.ndarray, b: np.ndarray, channels: slice = slice(0, 4)) -> bool:
    """Same picture up to RVM's last settling steps: tiny mean difference, almost no pixel far off."""
    if a.shape != b.shape:
        return False
    diff = np.abs(a[..., channels].astype(np.int16) - b[..., channels])
    return float(diff.mean()) <= 3.0 and float((diff > 40).mean()) <= 0.01


def image_input(name: str, path: Path, filters: Sequence[FilterSpec] = (), in_scene: bool = True) -> InputSpec:
    return InputSpec(name, "image_source", {"file": str(path)}, filters, in_scene)


def color_input(name: str, rgb: tuple[int, int, int], size: tuple[int, int], in_scene: bool = True) -> InputSpec:
    r, g, b = rgb
    settings = {"color": 0xFF000000 | b << 16 | g << 8 | r, "width": size[0], "height": size[1]}
    return InputSpec(name, "color_source_v3", settings, (), in_scene)


def media_input(name: str, path: Path, filters: Sequence[FilterSpec] = (), in_scene: bool = True) -> InputSpec:
    settings = {"is_local_file": True, "local_file": str(path), "looping": True, "hw_decode": False,
                "restart_on_activate": False, "close_when_inactive": False}
    return InputSpec(name, "ffmpeg_source", settings, filters, in_scene)


@dataclass
class ObsConfig:
    script: Path | None
    """The obs_script.py to load (None: OBS without the script)."""
    site_packages: Sequence[Path] | None = None
    """Put into OBS_RVM_SITE_PACKAGES for OBS (search order 1)."""
    environment_json: dict | None = None
    """Written to the isolated $XDG_CONFIG_HOME/obs-rvm/environment.json (search order 2)."""
    inputs: Sequence[InputSpec] = ()
    """Scene items are stacked in this order: the first is at the bottom."""
    other_collections: Mapping[str, Sequence[InputSpec]] = field(default_factory=dict)
    """More scene collections (same script) to switch to with SetCurrentSceneCollection."""
    canvas: tuple[int, int] = (640, 480)
    fps: int = 30
    env: Mapping[str, str] = field(default_factory=dict)
    """Extra environment for OBS (OBS_RVM_MODEL, OBS_RVM_CACHE_DIR, OBS_RVM_STATS_INTERVAL...)."""
    extra_scripts: Sequence[Path] = ()
    preview: bool = False
    """Render the main window's preview (costs CPU under Xvfb's software OpenGL)."""
    gdb: bool = False
    """Run OBS under gdb, which prints every thread's backtrace into obs-stdout.txt if OBS crashes."""
    valgrind: Path | None = None
    """Run OBS under valgrind's memcheck, its report written to this file (every invalid read and write, with the
    stack that made it). Slow: minutes to start."""
    start_timeout: float = 90.0
    window_manager: bool = False
    """Run openbox on the display first: Qt dialogs (the filter's properties) only paint with a window manager."""
    recordings: Path | None = None
    """Where StartRecord writes (Simple output mode, x264 at the streaming settings, Matroska)."""


@functools.cache
def obs_version() -> tuple[int, ...]:
    """The installed OBS Studio's version, e.g. (29, 0, 2); (0,) if it cannot say."""
    try:
        out = subprocess.run(["obs", "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError):
        return (0,)
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", out)
    return tuple(int(g) for g in found.groups() if g is not None) if found else (0,)


def _signal_thread(pid: int, signum: int) -> None:
    """Deliver a signal to one of a process's threads other than its main one (tgkill): the graphics thread
    where there is one, as a process-directed signal may land on any thread that does not block it."""
    import ctypes

    tasks = [int(t) for t in os.listdir(f"/proc/{pid}/task") if int(t) != pid]
    names = {t: Path(f"/proc/{pid}/task/{t}/comm").read_text().strip() for t in tasks}
    tid = next((t for t, n in names.items() if n.startswith("libobs: graphic")), tasks[0])
    sys_tgkill = 234  # x86_64
    if ctypes.CDLL(None, use_errno=True).syscall(sys_tgkill, pid, tid, signum) != 0:
        raise OSError(ctypes.get_errno(), f"tgkill {pid} {tid}")


log = logging.getLogger("obs_harness")
ASK_S = 3.0
"""OBS logs "Shutting down" within 0.1 s of a close request it takes; some go unanswered (Qt drops a close while a
modal window blocks the main one, e.g.): the request is repeated after this long."""
COLLECTION = "Test"
SCREEN = "1280x800"
PROFILE = "Test"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _collection(name: str, inputs: Sequence[InputSpec], scripts: Sequence[Path]) -> dict:
    items = [{"name": i.name, "id": n + 1, "visible": True, "locked": False, "pos": {"x": 0.0, "y": 0.0},
              "scale": {"x": 1.0, "y": 1.0}} for n, i in enumerate(x for x in inputs if x.in_scene)]
    sources = [{"id": "scene", "versioned_id": "scene", "name": "Scene",
                "settings": {"items": items, "id_counter": len(items)}}]
    for i in inputs:
        filters = [{"id": f.kind, "versioned_id": f.kind, "name": f.name, "settings": f.settings,
                    "enabled": f.enabled} for f in i.filters]
        sources.append({"id": i.kind, "versioned_id": i.kind, "name": i.name, "settings": i.settings,
                        "filters": filters})
    return {"name": name, "current_scene": "Scene", "current_program_scene": "Scene",
            "scene_order": [{"name": "Scene"}], "sources": sources,
            "modules": {"scripts-tool": [{"path": str(p), "settings": {}} for p in scripts]}}


class Obs:
    """One OBS process (and its Xvfb) in `workdir`. Use as a context manager, or start() and stop()."""

    def __init__(self, config: ObsConfig, workdir: Path) -> None:
        self.config = config
        self.workdir = Path(workdir)
        self.config_home = self.workdir / "config"
        self.port = _free_port()
        self.password = secrets.token_hex(12)
        self.returncode: int | None = None
        self._xvfb: subprocess.Popen | None = None
        self._obs: subprocess.Popen | None = None
        self._wm: subprocess.Popen | None = None
        self.display = ""
        self._client = None

    # -- set-up -------------------------------------------------------------------------------------------------

    def _write_config(self) -> None:
        root = self.config_home / "obs-studio"
        (root / "basic" / "scenes").mkdir(parents=True, exist_ok=True)
        (root / "basic" / "profiles" / PROFILE).mkdir(parents=True, exist_ok=True)
        (root / "global.ini").write_text(
            "[General]\nFirstRun=true\nEnableAutoUpdates=false\nConfirmOnExit=false\n"
            f"[Basic]\nProfile={PROFILE}\nProfileDir={PROFILE}\nSceneCollection={COLLECTION}\n"
            f"SceneCollectionFile={COLLECTION}\nConfigOnNewProfile=false\n"
            f"[BasicWindow]\nPreviewEnabled={'true' if self.config.preview else 'false'}\n"
            "[OBSWebSocket]\nFirstLoad=false\nServerEnabled=true\n"
            f"ServerPort={self.port}\nAuthRequired=true\nServerPassword={self.password}\nAlertsEnabled=false\n")
        width, height = self.config.canvas
        (root / "basic" / "profiles" / PROFILE / "basic.ini").write_text(
            f"[General]\nName={PROFILE}\n[Video]\nBaseCX={width}\nBaseCY={height}\nOutputCX={width}\n"
            f"OutputCY={height}\nFPSType=1\nFPSInt={self.config.fps}\n[Output]\nMode=Simple\n"
            + (f"[SimpleOutput]\nFilePath={self.config.recordings}\nRecFormat=mkv\nRecFormat2=mkv\n"
               f"RecQuality=Stream\nRecEncoder=x264\n" if self.config.recordings else ""))
        if self.config.recordings:
            Path(self.config.recordings).mkdir(parents=True, exist_ok=True)  # OBS refuses a missing folder
        scripts = ([self.config.script] if self.config.script else []) + list(self.config.extra_scripts)
        collections = {COLLECTION: self.config.inputs, **self.config.other_collections}
        for name, inputs in collections.items():
            (root / "basic" / "scenes" / f"{name}.json").write_text(json.dumps(_collection(name, inputs, scripts)))
        if self.config.environment_json is not None:
            (self.config_home / "obs-rvm").mkdir(parents=True, exist_ok=True)
            (self.config_home / "obs-rvm" / "environment.json").write_text(json.dumps(self.config.environment_json))

    def _environment(self, display: str) -> dict[str, str]:
        # Not this process's Python settings, nor the Qt plugin path that importing cv2 sets (OBS's Qt would load
        # OpenCV's plugins and abort).
        env = {k: v for k, v in os.environ.items()
               if not k.startswith(("OBS_RVM_SITE_PACKAGES", "PYTHON", "QT_QPA_", "VIRTUAL_ENV"))}
        # Nor an activated venv: OBS's embedded Python finds its prefix through the first python3 on PATH, and would
        # import this venv's packages (the missing-dependencies test then finds them).
        if sys.prefix != sys.base_prefix:
            venv_bin = str(Path(sys.prefix) / "bin")
            env["PATH"] = os.pathsep.join(p for p in env.get("PATH", "").split(os.pathsep) if p != venv_bin)
        env.update(DISPLAY=display, HOME=str(self.workdir / "home"), XDG_CONFIG_HOME=str(self.config_home))
        if self.config.site_packages is not None:
            env["OBS_RVM_SITE_PACKAGES"] = os.pathsep.join(map(str, self.config.site_packages))
        env.update(self.config.env)
        return env

    def start(self, timeout: float | None = None) -> Obs:
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "home").mkdir(exist_ok=True)
        self._write_config()
        read, write = os.pipe()
        self._xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write), "-screen", "0", f"{SCREEN}x24", "-nolisten",
                                       "tcp"], pass_fds=(write,), stderr=subprocess.DEVNULL)
        os.close(write)
        with os.fdopen(read) as f:
            display = ":" + f.readline().strip()
        self.display = display
        if self.config.window_manager:
            try:
                self._wm = subprocess.Popen(["openbox"], env={**os.environ, "DISPLAY": display},
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            except FileNotFoundError:
                self._xvfb.kill()
                self._xvfb.wait()
                raise RuntimeError("Qt dialogs need a window manager here: apt-get install openbox") from None
        out = open(self.workdir / "obs-stdout.txt", "wb")  # noqa: SIM115 - lives as long as the process
        # gdb passes SIGINT on to OBS, prints every thread's stack if OBS dies, and exits with OBS's exit code.
        gdb = ["gdb", "-q", "-batch", "-ex", "handle SIGINT nostop noprint pass", "-ex",
               "handle SIGPIPE nostop noprint", "-ex", "run", "-ex", "thread apply all bt", "-ex", "quit $_exitcode",
               "--args"] if self.config.gdb else []
        if self.config.valgrind:
            gdb = ["valgrind", "--tool=memcheck", "--error-limit=no", "--num-callers=40", "--track-origins=no",
                   f"--log-file={self.config.valgrind}"]
        self._obs = subprocess.Popen([*gdb, "obs", "--multi", "--collection", COLLECTION, "--profile", PROFILE,
                                      "--scene", "Scene"], env=self._environment(display), stdout=out,
                                     stderr=subprocess.STDOUT, cwd=self.workdir)
        out.close()
        try:
            self._connect(timeout or self.config.start_timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def _connect(self, timeout: float) -> None:
        import obsws_python
        from websocket import WebSocketTimeoutException

        logging.getLogger("obsws_python").setLevel(logging.CRITICAL)  # it logs every refused attempt with a traceback
        deadline = time.monotonic() + timeout
        while True:
            if self._obs.poll() is not None:
                raise RuntimeError(f"OBS exited with {self._obs.returncode} before obs-websocket answered; log:\n"
                                   + self.log_text()[-3000:])
            try:
                self._client = obsws_python.ReqClient(host="127.0.0.1", port=self.port, password=self.password,
                                                      timeout=300 if self.config.valgrind else 30)
                break
            except (ConnectionRefusedError, OSError, WebSocketTimeoutException):
                if time.monotonic() > deadline:
                    raise TimeoutError(f"obs-websocket did not answer on port {self.port} in {timeout:.0f} s") from None
                time.sleep(0.5)
        self._wait_ready(deadline)

    def _wait_ready(self, deadline: float) -> None:
        """obs-websocket accepts connections before OBS has finished loading (OBS 30.2 answers requests with 207
        "OBS is not ready to perform the request" for a moment): retry a cheap request until OBS serves it."""
        from obsws_python.error import OBSSDKRequestError

        while True:
            try:
                self._client.get_stats()
                return
            except OBSSDKRequestError as e:
                if e.code != 207:
                    raise
                if self._obs.poll() is not None:
                    raise RuntimeError(f"OBS exited with {self._obs.returncode} before it was ready") from None
                if time.monotonic() > deadline:
                    raise TimeoutError("OBS did not become ready for obs-websocket requests") from None
                time.sleep(0.1)

    @property
    def pid(self) -> int:
        """OBS's own process id (under gdb, the inferior's, not gdb's)."""
        if not self.config.gdb:
            return self._obs.pid
        children = Path(f"/proc/{self._obs.pid}/task/{self._obs.pid}/children").read_text().split()
        return next(int(c) for c in children if Path(f"/proc/{c}/comm").read_text().strip() == "obs")

    @property
    def crashed(self) -> bool:
        """OBS died on its own: a signal, or gdb or valgrind reporting one (the soak's crash counter)."""
        if self._obs.poll() is None:
            return False
        out = (self.workdir / "obs-stdout.txt").read_text(errors="replace")
        if self.config.valgrind and self.config.valgrind.is_file():
            out += self.config.valgrind.read_text(errors="replace")
        # gdb, Python, valgrind
        signs = ("received signal SIG", "Fatal Python error", "Process terminating with default action")
        return self._obs.returncode < 0 or any(sign in out for sign in signs)

    @property
    def client(self):
        """An obsws_python.ReqClient connected to this OBS."""
        return self._client

    # -- observing ----------------------------------------------------------------------------------------------

    @property
    def log_path(self) -> Path | None:
        logs = sorted((self.config_home / "obs-studio" / "logs").glob("*.txt"))
        return logs[-1] if logs else None

    def log_text(self) -> str:
        path = self.log_path
        return path.read_text(errors="replace") if path else ""

    def wait_log(self, pattern: str, timeout: float = 60.0, after: int = 0) -> re.Match:
        """Wait for a regex in the OBS log (from character `after` on) and return the match."""
        regex = re.compile(pattern)
        return self.wait_for(lambda: regex.search(self.log_text(), after), timeout, f"log line /{pattern}/")

    def wait_for(self, probe: Callable[[], T | None], timeout: float, what: str, interval: float = 0.25) -> T:
        """Poll until `probe` returns something other than None or False (an image counts), and return it."""
        deadline = time.monotonic() + timeout
        while True:
            result = probe()
            if result is not None and result is not False:
                return result
            if self._obs.poll() is not None:
                raise RuntimeError(f"OBS exited ({self._obs.returncode}) while waiting for {what}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"no {what} after {timeout:.0f} s")
            time.sleep(interval)

    def screenshot(self, source: str) -> np.ndarray:
        """The source rendered with its filters, as uint8 RGBA [H, W, 4] (a PNG keeps the alpha).

        OBS answers 702 ("Failed to render screenshot") while a source has no size yet, e.g. mid-way through a
        change of picture: asked again a few times before that counts as an error.
        """
        for attempt in range(5):
            try:
                data = self._client.get_source_screenshot(source, "png", None, None, -1).image_data
                break
            except Exception as e:
                if getattr(e, "code", None) != 702 or attempt == 4:
                    raise
                time.sleep(0.2)
        png = base64.b64decode(data.split(",", 1)[1])
        bgra = cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)
        return cv2.cvtColor(bgra, cv2.COLOR_BGRA2RGBA)

    def screen(self, path: Path) -> np.ndarray:
        """The whole X display as OBS's user sees it (ffmpeg's x11grab), saved as a PNG; returned as RGB."""
        subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "x11grab", "-video_size", SCREEN, "-i",
                        self.display, "-frames:v", "1", str(path)], check=True)
        return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)

    # -- shutdown -----------------------------------------------------------------------------------------------

    def close_main_window(self) -> bool:
        """Ask OBS to quit as a user does: the window manager's close request (WM_DELETE_WINDOW) to its main
        window, handled in Qt's event loop on OBS's main thread. False if no main window was found.

        Not SIGINT: OBS before 29.1 closes its main window inside the signal handler, on whichever thread the
        signal lands (a libobs thread, often), freeing widgets under the main thread's feet (upstream commit
        5182368, "Running Qt code in a signal handler is not safe"). A harness quitting so crashed OBS 29.0.2
        in about 1 of 13 sessions, with OBS's own filters too.
        """
        from Xlib import X, protocol
        from Xlib.display import Display
        from Xlib.error import XError

        display = Display(self.display)
        try:
            protocols, delete = display.intern_atom("WM_PROTOCOLS"), display.intern_atom("WM_DELETE_WINDOW")
            pending = [display.screen().root]
            while pending:
                window = pending.pop()
                try:
                    pending.extend(window.query_tree().children)
                    name = window.get_full_text_property(display.intern_atom("_NET_WM_NAME")) or \
                        window.get_wm_name() or ""
                    wm_class = window.get_wm_class() or ()
                    if not (isinstance(name, str) and name.startswith("OBS ") and "obs" in wm_class and
                            delete in (window.get_wm_protocols() or ())):
                        continue
                except XError:  # a window gone while we looked
                    continue
                event = protocol.event.ClientMessage(window=window, client_type=protocols,
                                                     data=(32, [delete, X.CurrentTime, 0, 0, 0]))
                window.send_event(event, event_mask=X.NoEventMask)
                display.flush()
                return True
            return False
        finally:
            display.close()

    def stop(self, timeout: float = 60.0, how: str = "auto") -> int | None:
        """Quit OBS, then SIGKILL if it hangs (returned as -9). Stops Xvfb too.

        how: "window" (close the main window, as a user does; SIGINT where no window is found), "sigint" (OBS's
        Ctrl-C handler), "sigint-thread" (SIGINT delivered to one of libobs' threads rather than the main one:
        scripts/quit_obs.py uses the last two to show what makes OBS 29.0.2 crash as it quits), or "auto": the
        window before OBS 29.1, whose Ctrl-C handler is unsafe, SIGINT from 29.1 on (handled in the main loop there;
        OBS 32.2 under Qt 6 ignores a close request sent to its window this way).
        """
        if how == "auto":
            how = "sigint" if obs_version() >= (29, 1) else "window"
        if self._client is not None:
            with contextlib.suppress(Exception):  # OBS may already be gone
                self._client.disconnect()
            self._client = None
        if self._obs is not None and self._obs.poll() is None:
            deadline = time.monotonic() + timeout
            asked = 0
            while self._obs.poll() is None and time.monotonic() < deadline:
                if not asked or "==== Shutting down" not in self.log_text():  # unanswered: ask again
                    try:
                        if how == "sigint-thread":
                            _signal_thread(self.pid, signal.SIGINT)
                        elif how == "sigint" or not (self.close_main_window() or asked):
                            os.kill(self.pid, signal.SIGINT)
                    except Exception as e:  # OBS may be gone already, or a window closed while we looked
                        log.warning("asking OBS to quit: %r", e)
                    asked += 1
                    if asked > 1:
                        log.warning("OBS had not begun to quit %g s after it was asked (%s): asked again", ASK_S, how)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    self._obs.wait(min(ASK_S, max(0.1, deadline - time.monotonic())))
            if self._obs.poll() is None:
                self._obs.kill()
                self._obs.wait()
        if self._obs is not None:
            self.returncode = self._obs.returncode
        if self._wm is not None and self._wm.poll() is None:
            self._wm.terminate()
            self._wm.wait(10)
        if self._xvfb is not None and self._xvfb.poll() is None:
            self._xvfb.terminate()
            self._xvfb.wait(10)
        return self.returncode

    def __enter__(self) -> Obs:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
