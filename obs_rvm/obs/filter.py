"""The "AI Background" source type: registration, the libobs callbacks, and one object per filter instance.

libobs cannot unregister a source type and keeps calling the registered function pointers for the life of the
process, so the struct and every callback live in this module (which a script reload does not re-import) and
registration happens once. Every callback catches everything: an exception must never reach libobs, and a
filter that failed draws its source unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
import threading
import time
from dataclasses import replace

from ..turns import INFERENCE
from . import libobs as obs
from . import properties
from . import settings as keys
from .frames import GpuFrames
from .live_draw import LiveDraw
from .locale import Text
from .refresh import RefreshCadence
from .stats import Rate, Rolling
from .status import Numbers, describe, stats_line
from .worker import GAP_NS, Captured, FilterWorker, Keyed, WorkerStatus

ID = b"obs_rvm_ai_background"
STALE_NS = 3_000_000_000
"""No keyed frame for this long (worker stuck, source hidden for a while): pass through rather than freeze. Counted
from the last keyed frame's arrival, not its age, so a slow machine still shows its (late) keyed video."""
CAPTURE_AHEAD = 1.0
"""Capture when the worker may finish its frame within this many frame intervals: a frame staged now is read
back and handed over at the next one, so capturing earlier only makes frames that get replaced unread."""
QUIET_NS = 1_000_000_000
"""Status changes refresh an open properties panel only after the settings have been left alone this long."""
JOIN_S = 30.0
"""How long script_unload waits for stopped workers to finish their frame (a model preparation in flight is
cancelled, so opening an engine is the longest thing left). 10 s was outlasted at OBS 30.2's exit in CI (a loaded
2-core machine); waiting longer only delays an exit that has a worker still running."""

_log = logging.getLogger("obs_rvm")


class _ObsLogHandler(logging.Handler):
    """Route the package's Python logging to the OBS log (never to stderr, which OBS shows as a script error)."""

    LEVELS = ((logging.ERROR, obs.LOG_ERROR), (logging.WARNING, obs.LOG_WARNING), (logging.INFO, obs.LOG_INFO))

    def emit(self, record: logging.LogRecord) -> None:
        try:
            level = next((o for py, o in self.LEVELS if record.levelno >= py), obs.LOG_DEBUG)
            obs.log(level, self.format(record))
        except Exception:
            self.handleError(record)


def _setting_reader(data: int) -> keys.FilterSettings:
    return keys.parse(
        lambda k: obs.text(obs.obs_data_get_string(data, k.encode())),
        lambda k: obs.obs_data_get_int(data, k.encode()),
        lambda k: obs.obs_data_get_double(data, k.encode()),
        lambda k: obs.obs_data_get_bool(data, k.encode()),
    )


class AiBackground:
    """One filter instance. Render-thread state is touched only inside video_render (graphics context held)."""

    def __init__(self, source: int, settings: keys.FilterSettings) -> None:
        self.source = source
        self.settings = settings
        self._lock = threading.Lock()  # settings vs. starting the worker: update() and render() run on two threads
        self.worker: FilterWorker | None = None
        """Started at the first frame: a filter on a source nobody shows costs nothing, and its log lines can name
        the source (a filter is created before it is attached to one)."""
        self.gpu = GpuFrames()
        self.live = LiveDraw()
        self.cadence = RefreshCadence()
        self.drawn_rate = Rate()
        self._layers = False
        """Whether the newest keyed frame holds the live mode's layers (drawn by self.live) or a composite."""
        self._transparent = False
        self._drawn_at = 0
        self.frame_time = 0
        self.shown_since = 0
        """Video frame time at which the current unbroken run of drawn frames began (see GAP_NS)."""
        self.received_time: int | None = None
        """Video frame time at which the keyed frame in the texture arrived."""
        self.render_ms = Rolling(600)
        self.wait_ms = Rolling(600)
        self.latency_ms = Rolling(120)
        self.shown_rate = Rate()
        self.updated_ns = 0
        self._seen_status: tuple = ()
        self._status_dirty = False
        self._stats_every_ns = int(float(os.environ.get("OBS_RVM_STATS_INTERVAL", "0") or 0) * 1e9)
        self._stats_at = 0
        self._render_error = ""

    @property
    def label(self) -> str:
        """How log lines name this filter: "AI Background 'AI' on 'Camera'"."""
        with obs.filter_sources(self.source) as sources:
            return self._label(sources[0] if sources else None)

    def _label(self, parent: int | None) -> str:
        name = obs.text(obs.obs_source_get_name(self.source))
        on = f" on '{obs.text(obs.obs_source_get_name(parent))}'" if parent else ""
        return f"AI Background '{name}'{on}"

    # -- callbacks ----------------------------------------------------------------------------------------------

    def update(self, settings: keys.FilterSettings) -> None:
        self.updated_ns = time.monotonic_ns()
        with self._lock:
            self.settings = settings
            if self.worker is not None:
                self.worker.configure(settings)

    def render(self) -> None:
        start = time.perf_counter_ns()
        try:
            self._render()
        except Exception as e:
            self._render_failed(e)
        self.render_ms.add((time.perf_counter_ns() - start) / 1e6)

    def _render(self) -> None:
        with obs.filter_sources(self.source) as sources:
            if sources is None:  # removed on another thread (or not attached yet): draw nothing this once
                return
            parent, target = sources
            width = obs.obs_source_get_base_width(target)
            height = obs.obs_source_get_base_height(target)
            if not width or not height:  # nothing to draw, as libobs itself does for a source with no size
                return
            now = obs.obs_get_video_frame_time()
            frame = self.gpu.render_input(parent, target, width, height, now)
            if frame is None:
                return
            try:
                self._render_frame(parent, frame, width, height, now)
            except Exception as e:
                self._render_failed(e, (width, height))

    def _render_frame(self, parent: int, frame: int, width: int, height: int, now: int) -> None:
        """Draw this frame from its input texture: keyed, or passed through while there is nothing to key with."""
        worker = self.worker or self._start_worker(parent)
        if worker is None:  # the script is unloaded (OBS exiting, or a reload under way): no new threads
            self.gpu.draw_input(width, height)
            return
        if now != self.frame_time:  # first call in this video frame: capture once, take the newest keyed frame
            INFERENCE.observe_lag(obs.obs_get_lagged_frames())
            self.wait_ms.add((time.monotonic_ns() - now) / 1e6)  # both on CLOCK_MONOTONIC (os_gettime_ns)
            interval, self.frame_time = now - self.frame_time, now
            if interval > GAP_NS:
                self.shown_since = now
            previous = self.gpu.read_previous()
            if previous is not None:
                worker.submit(Captured(*previous, self.shown_since))
            # A frame staged now is handed over at the next frame: skip the read-back (the costly part of a
            # capture) while the worker is sure to stay busy past that.
            self.cadence.tick()
            if worker.frame_due_within(CAPTURE_AHEAD * interval / 1e9) and self._refresh_due():
                self.gpu.capture(width, height, now)
                self.cadence.captured()
            keyed = worker.latest()
            if keyed is not None:
                self._upload(keyed)
                self.received_time = now
                self.latency_ms.add((now - keyed.frame_time) / 1e6)
                self.shown_rate.tick(now / 1e9)
            self._housekeeping(now)
        if (worker.running and self.received_time is not None and now - self.received_time < STALE_NS
                and self._drawn_size() == (width, height)):
            self._draw(frame, width, height, now)
        else:
            self.gpu.draw_input(width, height)

    def _start_worker(self, parent: int) -> FilterWorker | None:
        """The first frame starts the worker, unless the script is unloaded (then nothing may outlive it)."""
        with _lock:
            if _suspended:
                return None
            with self._lock:
                self.worker = FilterWorker(self._label(parent), self.settings)
                return self.worker

    def suspend(self) -> FilterWorker | None:
        """Script unload: stop the worker and forget it (the next frame after a script load starts a new one)."""
        with self._lock:
            worker, self.worker = self.worker, None
        if worker is not None:
            worker.stop()
        return worker

    # -- live mode (sync = live, or auto on the CPU) ----------------------------------------------------------------

    def _refresh_due(self) -> bool:
        """Live mode hands a frame over every `matte_refresh` video frames at most; sync mode keys every frame."""
        return not self._layers or self.cadence.due(self.settings.matte_refresh)

    def _upload(self, keyed: Keyed) -> None:
        self._layers, self._transparent = keyed.layers, self.settings.background.mode == "transparent"
        (self.live if keyed.layers else self.gpu).upload(keyed.frame)

    def _drawn_size(self) -> tuple[int, int] | None:
        return self.live.texture_size if self._layers else self.gpu.texture_size

    def _draw(self, frame: int, width: int, height: int, now: int) -> None:
        if not self._layers:
            self.gpu.draw(width, height)
        elif self.live.draw(frame, width, height, self._transparent) and now != self._drawn_at:
            self._drawn_at = now
            self.drawn_rate.tick(now / 1e9)

    def _render_failed(self, error: Exception, size: tuple[int, int] | None = None) -> None:
        """Log a drawing error once and pass this frame's input through, if it was rendered."""
        message = f"drawing failed: {type(error).__name__}: {error}"
        if message != self._render_error:
            self._render_error = message
            _log.error("%s: %s", self.label, message)
        if size is not None:
            with contextlib.suppress(Exception):  # nothing else can be drawn
                self.gpu.draw_input(*size)

    def _housekeeping(self, now: int) -> None:
        """Once per frame: refresh an open properties panel on status changes, and log stats when asked to."""
        status = self.snapshot()
        # The size and backend too: a source changing size re-keys without a state change, and an open panel must
        # not keep showing the old resolution.
        seen = (status.state, status.error, status.message, status.size, status.backend, status.layers)
        if seen != self._seen_status:
            self._seen_status, self._status_dirty = seen, True
        if self._status_dirty and time.monotonic_ns() - self.updated_ns > QUIET_NS:
            self._status_dirty = False
            obs.obs_source_update_properties(self.source)
        if self._stats_every_ns and now - self._stats_at >= self._stats_every_ns:
            self._stats_at = now
            obs.log(obs.LOG_INFO, f"stats {self.label}: {stats_line(self.snapshot(), self.numbers())}")

    def numbers(self) -> Numbers:
        worker = self.worker
        render = Numbers(shown_fps=self.shown_rate.per_second(self.frame_time / 1e9),
                         latency_ms=self.latency_ms.median(), render_median_ms=self.render_ms.median(),
                         render_p99_ms=self.render_ms.percentile(99), render_max_ms=self.render_ms.percentile(100),
                         wait_max_ms=self.wait_ms.percentile(100))
        if worker is None:
            return render
        return replace(render, inference_fps=worker.inference_rate.per_second(time.perf_counter()),
                       inference_ms=worker.inference_ms.median(), dropped=worker.dropped,
                       drawn_fps=self.drawn_rate.per_second(self.frame_time / 1e9) if self._layers
                       else render.shown_fps, still_skipped=worker.still.skipped, sync=self.settings.sync,
                       refresh=self.settings.matte_refresh, sharing=max(1, INFERENCE.sharing()),
                       pause_ms=1000 * INFERENCE.pause_s)

    def snapshot(self) -> WorkerStatus:
        worker = self.worker
        if worker is None:
            return WorkerStatus(state="starting", message="waiting for the source to be shown")
        return worker.snapshot()

    def status(self, tr: Text) -> tuple[str, str]:
        return describe(tr, self.snapshot(), self.numbers())

    def stop(self) -> FilterWorker | None:
        """Filter removed or destroyed: the worker finishes its frame and exits on its own; nothing blocks here."""
        worker = self.worker
        if worker is not None:
            worker.stop()
        return worker

    def destroy(self) -> FilterWorker | None:
        """Free the graphics objects; returns the (stopping) worker for script_unload to wait for."""
        worker = self.stop()
        obs.obs_enter_graphics()
        try:
            self.gpu.destroy()
            self.live.destroy()
        finally:
            obs.obs_leave_graphics()
        n = self.numbers()
        _log.info("%s removed: %d frames keyed, render thread %.2f ms median / %.2f ms p99",
                  self.label, self.snapshot().frames, n.render_median_ms or 0, n.render_p99_ms or 0)
        return worker


# -- the registry: module-level, so it outlives script reloads ------------------------------------------------------

_instances: dict[int, AiBackground] = {}
_stopped: list[FilterWorker] = []
_lock = threading.Lock()
_next_handle = 1
_registered = False
_suspended = False
"""Between script_unload and the next script_load: no worker may start (Python finalizes at OBS exit, and OBS
destroys the last filters only after the script is unloaded)."""
_name = ctypes.create_string_buffer(Text()("AIBackground").encode())


def _tr() -> Text:
    return Text(obs.text(obs.obs_get_locale()))


_failures: set[str] = set()


def _guard(default=None):
    """Wrap a libobs callback body: log an exception (once per message) and return a safe value."""

    def wrap(fn):
        def call(*args):
            try:
                return fn(*args)
            except Exception as e:
                message = f"AI Background: {fn.__name__} failed: {type(e).__name__}: {e}"
                if message not in _failures:
                    _failures.add(message)
                    _log.error("%s", message)
                return default

        call.__name__ = fn.__name__
        return call

    return wrap


@obs.GetNameFn
@_guard()
def _get_name(_type_data):
    return ctypes.addressof(_name)


@obs.CreateFn
@_guard()
def _create(settings, source):
    global _next_handle
    instance = AiBackground(source, _setting_reader(settings))
    with _lock:
        handle, _next_handle = _next_handle, _next_handle + 1
        _instances[handle] = instance
    return handle


@obs.DataFn
@_guard()
def _destroy(data):
    with _lock:
        instance = _instances.pop(data, None)
    worker = instance.destroy() if instance is not None else None
    if worker is not None:
        with _lock:
            _stopped[:] = [w for w in _stopped if w.alive]
            _stopped.append(worker)


@obs.GetDefaultsFn
@_guard()
def _get_defaults(settings):
    for key, value in keys.defaults().items():
        k = key.encode()
        if isinstance(value, bool):
            obs.obs_data_set_default_bool(settings, k, value)
        elif isinstance(value, int):
            obs.obs_data_set_default_int(settings, k, value)
        elif isinstance(value, float):
            obs.obs_data_set_default_double(settings, k, value)
        else:
            obs.obs_data_set_default_string(settings, k, value.encode())


@obs.GetPropertiesFn
@_guard()
def _get_properties(data):
    instance = _instances.get(data) if data else None
    tr = _tr()
    mode = instance.settings.background.mode if instance else keys.defaults()[keys.BACKGROUND]
    status = instance.status(tr) if instance else None
    return properties.build(tr, str(mode), status, _refresh)


@obs.ClickedFn
@_guard(default=False)
def _refresh(_props, _prop, data):
    instance = _instances.get(data) if data else None
    worker = instance.worker if instance is not None else None
    if worker is not None and worker.status.state == "error":
        worker.retry()
    return True


@obs.DataPtrFn
@_guard()
def _update(data, settings):
    instance = _instances.get(data)
    if instance is not None:
        instance.update(_setting_reader(settings))


@obs.DataPtrFn
def _video_render(data, _effect):
    instance = _instances.get(data)  # libobs itself passes the video through for a filter whose create failed
    if instance is not None:
        instance.render()  # catches everything itself and passes the video through


@obs.DataPtrFn
@_guard()
def _filter_remove(data, _parent):
    instance = _instances.get(data)
    if instance is not None:
        instance.stop()


_info = obs.SourceInfo(
    id=ID,
    type=obs.OBS_SOURCE_TYPE_FILTER,
    output_flags=obs.OBS_SOURCE_VIDEO | obs.OBS_SOURCE_SRGB,
    get_name=_get_name,
    create=_create,
    destroy=_destroy,
    get_defaults=_get_defaults,
    get_properties=_get_properties,
    update=_update,
    video_render=_video_render,
    filter_remove=_filter_remove,
)


def register() -> bool:
    """Register the source type once per OBS process; a script reload reuses it. True if registered now."""
    global _registered, _suspended
    with _lock:
        _suspended = False
    if not any(isinstance(h, _ObsLogHandler) for h in _log.handlers):
        _log.addHandler(_ObsLogHandler())
        _log.setLevel(logging.DEBUG)
        _log.propagate = False
    if _registered:
        obs.log(obs.LOG_INFO, "AI Background filter already registered (script reloaded)")
        return False
    at_exit = getattr(threading, "_register_atexit", None)  # runs before Python joins the remaining threads
    if at_exit is not None:
        at_exit(_at_python_exit)
    obs.obs_register_source_s(ctypes.byref(_info), ctypes.sizeof(_info))
    _registered = True
    obs.log(obs.LOG_INFO, "AI Background filter registered")
    return True


def suspend(timeout: float = JOIN_S) -> int:
    """script_unload: stop every worker, live filters' included, and wait for them; returns how many still run.

    At OBS exit, Python finalizes soon after the script is unloaded, and OBS destroys the remaining filters only
    then, on another thread: a worker still keying (or preparing a model) at that point would run into a half-torn-
    down interpreter. A script reload starts the workers again at their next frame.
    """
    global _suspended
    with _lock:
        _suspended = True
        instances = list(_instances.values())
    start = time.monotonic()
    workers = [w for w in (i.suspend() for i in instances) if w is not None]
    with _lock:
        _stopped.extend(workers)
        waited = len(_stopped)
    left = join_stopped(timeout)
    _log.info("AI Background: script unloaded; %d worker(s) stopped in %.1f s", waited - left,
              time.monotonic() - start)
    return left


def join_stopped(timeout: float = JOIN_S) -> int:
    """Wait for the workers of destroyed filters (script unload, OBS exit); returns how many are still running."""
    deadline = time.monotonic() + timeout
    with _lock:
        workers = list(_stopped)
    for worker in workers:
        worker.join(max(0.0, deadline - time.monotonic()))
    with _lock:
        _stopped[:] = [w for w in _stopped if w.alive]
        left = len(_stopped)
    if left:
        _log.warning("AI Background: %d worker thread(s) still finishing a frame", left)
    return left


def _at_python_exit() -> None:
    """OBS is finalizing Python: say whether any worker still runs (each would delay OBS's exit, or worse)."""
    with _lock:
        workers = _stopped + [i.worker for i in _instances.values()]
    running = [w.label for w in workers if w is not None and w.alive]
    if running:
        _log.warning("AI Background: Python is exiting with %d worker(s) running: %s", len(running), ", ".join(running))
    else:
        _log.info("AI Background: Python is exiting; no worker running")
