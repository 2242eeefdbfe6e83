"""The filter's inference thread: it owns the MattingSession, so OBS's render thread never waits for a model.

Frames arrive through a single slot (the newest wins, nothing queues, so latency stays bounded) and keyed frames
leave through another. Settings changes are applied here between frames: engine changes rebuild the session,
background changes swap it live. Any failure is logged once, kept in the status, and halts keying until the
settings change (the filter passes the video through meanwhile). This module never touches OBS.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field, replace

import numpy as np

from ..errors import ObsRvmError
from ..matting import MattingSession
from ..slot import LatestSlot
from ..threads import lower_thread_priority
from .refresh import StillDetector
from .settings import FilterSettings
from .stats import Rate, Rolling

log = logging.getLogger("obs_rvm.obs")

GAP_NS = 500_000_000
"""A pause this long in the filter's drawing (source hidden or inactive) forgets RVM's recurrent state. Measured on
the render thread, which sees every video frame, not between keyed frames: a slow CPU or several cameras taking turns
key 2 frames a second or fewer, and resetting the state at each would make the matte flicker."""
POLL_S = 0.1
"""How often an idle worker looks for new settings or a stop request."""


NICE = 10
"""Inference runs at this (Linux) niceness: on a saturated CPU, keying slows down before OBS drops a frame."""


@dataclass(frozen=True)
class Captured:
    frame: np.ndarray
    """uint8 RGBA [H, W, 4], owned by the worker once handed over."""
    frame_time: int
    """OBS video time (ns) of the frame it was captured in."""
    shown_since: int = 0
    """OBS video time at which the filter's current unbroken run of drawn frames began: a new value means it was not
    drawn for a while (GAP_NS), and RVM's recurrent state is stale."""


@dataclass(frozen=True)
class Keyed:
    frame: np.ndarray
    frame_time: int
    """frame_time of the Captured it was made from: drawn time minus this is the pipeline latency."""
    layers: bool = False
    """The frame holds the live mode's layers (RGB = background layer, A = alpha), not a finished composite."""


@dataclass
class WorkerStatus:
    state: str = "starting"
    """starting (building the session or the first frame), running, error, stopped."""
    backend: str = ""
    model: str = ""
    size: tuple[int, int] | None = None
    downsample_ratio: float | None = None
    notes: list[str] = field(default_factory=list)
    message: str = ""
    """Latest progress message from the session ("preparing the model...", "building TensorRT engine...")."""
    message_time: float = 0.0
    error: str = ""
    frames: int = 0
    resets: int = 0
    """Times the recurrent state was forgotten since the session was made (a pause in drawing, a scene cut)."""
    layers: bool = False
    """Live mode: the session makes layers that OBS composites with the current frame."""


class FilterWorker:
    """One per filter instance. Thread-safe entry points: submit, latest, configure, retry, stop, snapshot."""

    def __init__(self, label: str, settings: FilterSettings) -> None:
        self.label = label
        self._frames: LatestSlot[Captured] = LatestSlot()
        self._results: LatestSlot[Keyed] = LatestSlot()
        self._lock = threading.Lock()
        self._pending: FilterSettings | None = settings
        self._force_rebuild = False
        self._settings: FilterSettings | None = None
        self._session: MattingSession | None = None
        self._halted = False
        self._logged_error = ""
        self._busy_since: float | None = None
        """perf_counter() when the frame being keyed was taken; None between frames."""
        self._first_frame_time: int | None = None
        self._shown_since: int | None = None
        """shown_since of the last frame keyed; None before the session's first frame."""
        self._stop = threading.Event()
        self.still = StillDetector()
        self.status = WorkerStatus()
        self.inference_ms = Rolling(60)
        self.inference_rate = Rate()
        # Not a daemon (a thread started from an OBS callback would inherit daemon=True): Python's finalization at
        # OBS exit then waits for the frame in flight instead of killing the thread inside onnxruntime (abort).
        self._thread = threading.Thread(target=self._run, name=f"obs-rvm {label}", daemon=False)
        self._thread.start()

    # -- called from OBS threads ------------------------------------------------------------------------------

    def submit(self, captured: Captured) -> None:
        """Render thread: hand over the newest frame (replacing one not yet taken)."""
        self._frames.put(captured)

    def latest(self) -> Keyed | None:
        """Render thread: the newest keyed frame not yet taken, without waiting."""
        return self._results.take(timeout=0)

    def frame_due_within(self, seconds: float) -> bool:
        """Whether the worker may be free for a new frame within `seconds`: done with the frame it keys and with
        the one waiting for it, if any, at its typical speed.

        Lets the render thread skip reading back frames that would be replaced before anyone took them. A frame
        handed over just now counts: a worker faster than the video takes it at once, so the next capture must not
        wait for it (that halved the keying rate); a worker running late (a starved CPU) has it waiting, and the
        render thread stops reading back frames that would starve it further.
        """
        if self._halted:
            return False
        typical = self.inference_ms.median()
        waiting = self._frames.peek() is not None
        if typical is None:  # no speed known yet (the first frame opens the engine)
            return not waiting
        now = time.perf_counter()
        started = self._busy_since
        free_at = max(now, started + typical / 1000) if started is not None else now
        if waiting:
            free_at += typical / 1000
        return free_at - now <= seconds

    @property
    def running(self) -> bool:
        """Whether keyed frames are current: False while (re)building, after an error, once stopped."""
        return self.status.state == "running"

    def configure(self, settings: FilterSettings) -> None:
        """UI thread: new settings, applied by the worker before its next frame."""
        with self._lock:
            self._pending = settings

    def retry(self) -> None:
        """Rebuild the session with the current settings (after fixing a file the error pointed at)."""
        with self._lock:
            if self._pending is None and self._settings is not None:
                self._pending = self._settings
            self._force_rebuild = True

    def snapshot(self) -> WorkerStatus:
        return replace(self.status, notes=list(self.status.notes))

    @property
    def dropped(self) -> int:
        """Captured frames replaced before the worker could take them (the worker is slower than the video)."""
        return self._frames.dropped

    def stop(self) -> None:
        """Ask the thread to finish its current frame and exit; never blocks (OBS may be destroying the filter).

        A model preparation in flight is cancelled: OBS's exit waits for this thread."""
        self._stop.set()
        self._frames.close()

    def join(self, timeout: float | None = None) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    # -- the thread -------------------------------------------------------------------------------------------

    def _run(self) -> None:
        log.debug("%s: worker started", self.label)
        lower_thread_priority(NICE)
        try:
            while not self._stop.is_set():
                try:
                    self._apply_pending()
                    if self._session is None or self._halted:
                        self._stop.wait(POLL_S)
                        continue
                    item = self._frames.take(timeout=POLL_S)
                    if item is not None and not self._stop.is_set():
                        self._key(item)
                except Exception as e:  # the thread must survive anything: report it and wait for new settings
                    self._fail(e)
        finally:
            self._close_session()
            self.status.state = "stopped"
            log.debug("%s: worker stopped", self.label)

    def _apply_pending(self) -> None:
        with self._lock:
            pending, self._pending = self._pending, None
            force, self._force_rebuild = self._force_rebuild, False
        if pending is None:
            return
        previous, self._settings = self._settings, pending
        try:
            pending.check()
            if force or self._session is None or previous is None or pending.engine_key != previous.engine_key:
                self._rebuild(pending)
            elif pending.background != previous.background:
                self._session.set_background(pending.background)
                if self._halted:  # the failure was the background: key again with the new one
                    self._resume()
        except Exception as e:
            self._fail(e)
            return
        self._halted = False

    def _rebuild(self, settings: FilterSettings) -> None:
        self._close_session()
        self.still.forget()
        self._results.take(timeout=0)  # a frame keyed with the old settings must not be drawn
        self._resume()
        self._session = MattingSession(settings.session_options(), on_status=self._on_status,
                                       download_progress=self._on_download, cancel=self._stop)
        self.status.model = self._session.status.model
        self.status.notes = list(self._session.status.notes)

    def _resume(self) -> None:
        self.status.state = "starting"
        self.status.error = ""
        self._logged_error = ""
        self._shown_since = None

    def _skip_still(self, item: Captured) -> bool:
        """Live mode with "skip while still": whether this frame adds nothing (the matte drawn is still right)."""
        settings, session = self._settings, self._session
        if settings is None or session is None or not settings.skip_still:
            return False
        if session.engine is not None and not session.status.layers:  # in sync every frame shown is keyed
            return False
        return not self.still.should_key(item.frame, item.frame_time)

    def _key(self, item: Captured) -> None:
        session = self._session
        assert session is not None
        if self._skip_still(item):
            return
        if self._shown_since is not None and item.shown_since != self._shown_since:
            session.reset()
        if self._first_frame_time is None:
            self._first_frame_time = item.frame_time
        self._shown_since = item.shown_since
        start = self._busy_since = time.perf_counter()
        try:
            out = session.process(item.frame, (item.frame_time - self._first_frame_time) / 1e9)
            self._results.put(Keyed(np.array(out, copy=True), item.frame_time, session.status.layers))
        finally:
            self._busy_since = None
        done = time.perf_counter()
        self.inference_ms.add(1000 * (done - start))
        self.inference_rate.tick(done)
        self.status.frames += 1
        st = session.status
        self.status.backend, self.status.size, self.status.downsample_ratio = st.backend, st.size, st.downsample_ratio
        self.status.notes = list(st.notes)
        self.status.layers, self.status.resets = st.layers, st.resets
        if self.status.state != "running":
            self.status.state = "running"
            width, height = st.size or (0, 0)
            log.info("%s: keying %dx%d with %s, model %s, downsample ratio %g", self.label, width, height,
                     st.backend, st.model, st.downsample_ratio or 0)

    def _on_status(self, message: str) -> None:
        self.status.message, self.status.message_time = message, time.monotonic()
        log.info("%s: %s", self.label, message)

    def _on_download(self, done: int, total: int | None) -> None:
        percent = f"{100 * done // total}%" if total else f"{done // (1 << 20)} MiB"
        self.status.message, self.status.message_time = f"downloading the model: {percent}", time.monotonic()

    def _fail(self, error: Exception) -> None:
        if self._stop.is_set():  # stopping (a model preparation cancelled, say): nothing the user needs to see
            log.debug("%s: stopped while %s", self.label, error)
            return
        if isinstance(error, ObsRvmError):
            message = str(error)
        else:
            message = f"unexpected {type(error).__name__}: {error}"
            log.debug("%s: %s", self.label, message, exc_info=error)
        self._halted = True
        self.status.state = "error"
        self.status.error = message
        if message != self._logged_error:
            self._logged_error = message
            log.error("%s: %s", self.label, message)

    def _close_session(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            try:
                session.close()
            except Exception as e:  # closing must never take the thread (or OBS) down
                log.warning("%s: closing the session failed: %s", self.label, e)
