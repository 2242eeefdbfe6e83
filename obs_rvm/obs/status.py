"""The filter's status in words: for the properties panel and the OBS log."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .worker import WorkerStatus

NORMAL, WARNING, ERROR = "normal", "warning", "error"
FAILED = " failed: "
"""How MattingSession words a backend that was tried and failed (then fell back to the next one)."""


@dataclass(frozen=True)
class Numbers:
    """Measurements of one filter, from the worker and the render thread."""

    inference_fps: float = 0.0
    inference_ms: float | None = None
    shown_fps: float = 0.0
    latency_ms: float | None = None
    render_median_ms: float | None = None
    render_p99_ms: float | None = None
    render_max_ms: float | None = None
    wait_max_ms: float | None = None
    """Longest delay from a video frame's start to our first video_render of it (OBS's own rendering before us,
    and any wait for Python's GIL, which a thread holding it for long would make OBS skip frames with)."""
    dropped: int = 0
    drawn_fps: float = 0.0
    """Live mode: frames of the current video drawn per second (OBS's frame rate when all is well)."""
    still_skipped: int = 0
    """Live mode: frames not keyed because the picture was still."""
    sync: str = "auto"
    """The sync setting (auto, sync, live), to say why the mode in use was chosen."""
    refresh: int = 1
    sharing: int = 1
    """Filters in this OBS that took turns keying within the last seconds (turns.py), this one included."""
    pause_ms: float = 0.0
    """The pause after each inference while OBS renders frames late (turns.py's pacing): keying giving way."""


GIVING_WAY_MS = 5.0
"""A pause this long or longer is worth telling the user about (a shorter one is a hiccup fading away)."""


def cpu_saved(numbers: Numbers) -> float | None:
    """Share of the keying work that matte refresh saves: 1 - keyed per second / what the worker could key (the
    video's frame rate, or as fast as one inference allows, whichever is lower). None before there are numbers."""
    if not numbers.inference_ms or not numbers.drawn_fps:
        return None
    possible = min(numbers.drawn_fps, 1000 / numbers.inference_ms)
    return max(0.0, 1 - numbers.inference_fps / possible) if possible > 0 else None


def _ms(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f} ms"


def describe(tr: Callable[[str], str], status: WorkerStatus, numbers: Numbers) -> tuple[str, str]:
    """(multi-line text, level) for the status line of the properties panel."""
    if status.state == "error":
        return f"{tr('Status.Error')}: {status.error}\n{tr('Status.PassThrough')}", ERROR
    lines = []
    if status.state != "running":
        step = f": {status.message}" if status.message else ""
        lines.append(f"{tr('Status.' + status.state.capitalize())}{step}")
    else:
        lines.append(f"{tr('Status.Running')}: {status.backend}")
        width, height = status.size or (0, 0)
        lines.append(f"{tr('Status.Model')}: {status.model} · {width}x{height} · "
                     f"{tr('Status.Ratio')} {status.downsample_ratio or 0:g}")
        lines.append(f"{tr('Status.Inference')}: {numbers.inference_fps:.1f} fps ({_ms(numbers.inference_ms)}) · "
                     f"{tr('Status.Shown')}: {numbers.shown_fps:.1f} fps · {tr('Status.Dropped')}: {numbers.dropped}")
        if numbers.sharing > 1:
            lines.append(f"{tr('Status.Shared')}: {numbers.sharing} {tr('Status.SharedTurns')} · "
                         f"{tr('Status.SharedThis')} {numbers.inference_fps:.1f} fps")
        if numbers.pause_ms >= GIVING_WAY_MS:
            lines.append(f"{tr('Status.GivingWay')}: {tr('Status.GivingWayWhy')} {_ms(numbers.pause_ms)}")
        lines.extend(_mode_lines(tr, status, numbers))
        lines.append(f"{tr('Status.Render')}: {_ms(numbers.render_median_ms, 2)} median, "
                     f"{_ms(numbers.render_p99_ms, 2)} p99")
    if status.notes:
        lines.append(f"{tr('Status.Skipped')}: {'; '.join(status.notes)}")
    return "\n".join(lines), level(status)


def _mode_lines(tr: Callable[[str], str], status: WorkerStatus, numbers: Numbers) -> list[str]:
    """Which video mode runs and why, and its latency: in sync the whole pipeline's, live the matte's age."""
    why = ""
    if numbers.sync == "auto":
        why = f" ({tr('Status.Auto')}: {tr('Status.AutoLive' if status.layers else 'Status.AutoSync')})"
    if not status.layers:
        return [f"{tr('Status.Mode')}: {tr('Status.Sync')}{why}",
                f"{tr('Status.Latency')}: {_ms(numbers.latency_ms)} ({tr('Status.LatencyHint')})"]
    lines = [f"{tr('Status.Mode')}: {tr('Status.Live')}{why} · {tr('Status.Drawn')}: {numbers.drawn_fps:.1f} fps",
             f"{tr('Status.Latency')}: {tr('Status.VideoLatency')} 0 ms · {tr('Status.MatteLatency')} "
             f"{_ms(numbers.latency_ms)}"]
    saved = cpu_saved(numbers)
    if saved is not None and (numbers.refresh > 1 or numbers.still_skipped):
        lines.append(f"{tr('Status.Saved')}: {100 * saved:.0f}% · {tr('Status.StillSkipped')}: "
                     f"{numbers.still_skipped}")
    return lines


def level(status: WorkerStatus) -> str:
    """ERROR when keying halted; WARNING when a backend that should have run failed and keying fell back; else
    NORMAL. A backend that simply is not available here (no GPU, TensorRT not installed) is no warning: it is said
    in the text, in OBS's normal colour."""
    if status.state == "error":
        return ERROR
    return WARNING if any(FAILED in note for note in status.notes) else NORMAL


def stats_line(status: WorkerStatus, numbers: Numbers) -> str:
    """One machine-readable log line (key=value) for measurements."""

    def num(value: float | None) -> str:
        return "nan" if value is None else f"{value:.3f}"

    return (f"state={status.state} render_median_ms={num(numbers.render_median_ms)} "
            f"render_p99_ms={num(numbers.render_p99_ms)} render_max_ms={num(numbers.render_max_ms)} "
            f"wait_max_ms={num(numbers.wait_max_ms)} inference_fps={numbers.inference_fps:.2f} "
            f"inference_ms={num(numbers.inference_ms)} shown_fps={numbers.shown_fps:.2f} "
            f"latency_ms={num(numbers.latency_ms)} dropped={numbers.dropped} frames={status.frames} "
            f"backend={status.backend.replace(' ', '_') or '-'} layers={int(status.layers)} "
            f"drawn_fps={numbers.drawn_fps:.2f} still_skipped={numbers.still_skipped} sharing={numbers.sharing} "
            f"pause_ms={numbers.pause_ms:.0f} resets={status.resets}")
