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
    dropped: int = 0


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
        lines.append(f"{tr('Status.Latency')}: {_ms(numbers.latency_ms)} ({tr('Status.LatencyHint')})")
        lines.append(f"{tr('Status.Render')}: {_ms(numbers.render_median_ms, 2)} median, "
                     f"{_ms(numbers.render_p99_ms, 2)} p99")
    if status.notes:
        lines.append(f"{tr('Status.Skipped')}: {'; '.join(status.notes)}")
    return "\n".join(lines), level(status)


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
            f"render_p99_ms={num(numbers.render_p99_ms)} inference_fps={numbers.inference_fps:.2f} "
            f"inference_ms={num(numbers.inference_ms)} shown_fps={numbers.shown_fps:.2f} "
            f"latency_ms={num(numbers.latency_ms)} dropped={numbers.dropped} frames={status.frames} "
            f"backend={status.backend.replace(' ', '_') or '-'}")
