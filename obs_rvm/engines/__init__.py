"""Backend selection: which engine runs the prepared graph here, and why the better ones were skipped."""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BackendError
from ..graph import PreparedGraph
from .base import Engine

BACKENDS = ("auto", "tensorrt", "onnxruntime")


@dataclass(frozen=True)
class Candidate:
    """One way to run the graph: a backend on a device."""

    backend: str
    gpu: bool

    def label(self) -> str:
        return f"{self.backend} ({'GPU' if self.gpu else 'CPU'})"


def plan(requested: str) -> tuple[list[Candidate], list[str]]:
    """Candidates to try in order for a backend request, and the reasons the skipped ones cannot run here.

    An explicit request that cannot be met raises BackendError: asking for the GPU never silently runs on the CPU.
    """
    if requested not in BACKENDS:
        raise BackendError(f"unknown backend '{requested}': choose one of {', '.join(BACKENDS)}")
    from .onnxruntime import cuda_available

    skipped: list[str] = []
    candidates: list[Candidate] = []
    if requested == "tensorrt":
        raise BackendError("the tensorrt backend is not available in this build: use --backend onnxruntime")
    ok, why = cuda_available()
    if ok:
        candidates.append(Candidate("onnxruntime", gpu=True))
    else:
        skipped.append(why)
    candidates.append(Candidate("onnxruntime", gpu=False))
    return candidates, skipped


def open_engine(candidate: Candidate, graph: PreparedGraph, *, threads: int | None = None,
                fp16: bool = True) -> Engine:
    from .onnxruntime import OnnxRuntimeEngine

    return OnnxRuntimeEngine(graph, cuda=candidate.gpu, threads=threads)


__all__ = ["BACKENDS", "Candidate", "Engine", "open_engine", "plan"]
