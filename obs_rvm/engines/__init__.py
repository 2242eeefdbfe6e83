"""Backend selection: which engine runs the prepared graph here, and why the better ones were skipped."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import BackendError
from ..graph import PreparedGraph
from .base import Engine

log = logging.getLogger("obs_rvm")

BACKENDS = ("auto", "tensorrt", "onnxruntime")


@dataclass(frozen=True)
class Candidate:
    """One way to run the graph: a backend on a device, in FP16 or FP32."""

    backend: str
    gpu: bool
    fp16: bool = False
    """Whether this candidate runs the FP16 graph (TensorRT on a GPU with fast FP16, unless FP32 was asked for)."""

    def label(self) -> str:
        return f"{self.backend} ({'GPU' if self.gpu else 'CPU'})"


def plan(requested: str, fp16: bool = True) -> tuple[list[Candidate], list[str]]:
    """Candidates to try in order for a backend request, and notes on why better ones were skipped.

    auto: TensorRT, else onnxruntime's CUDA provider, else onnxruntime on the CPU. An explicit request that cannot
    be met raises BackendError: asking for the GPU never silently runs on the CPU.
    """
    if requested not in BACKENDS:
        raise BackendError(f"unknown backend '{requested}': choose one of {', '.join(BACKENDS)}")
    from .gpu import find_gpu
    from .onnxruntime import cuda_available
    from .tensorrt import availability

    notes: list[str] = []
    candidates: list[Candidate] = []
    gpu, find_gpu_reason = find_gpu()
    if requested in ("auto", "tensorrt"):
        trt_gpu, reasons = availability()
        if reasons and requested == "tensorrt":
            raise BackendError(f"the tensorrt backend cannot run here: {'; '.join(reasons)}. Choose backend auto to "
                               f"fall back to onnxruntime")
        if reasons:
            notes.append(f"TensorRT skipped: {'; '.join(reasons)}")
        elif trt_gpu is not None:
            half = fp16 and trt_gpu.fast_fp16
            if fp16 and not half:
                notes.append(f"FP16 is slow on {trt_gpu.describe()}: TensorRT builds FP32")
            candidates.append(Candidate("tensorrt", gpu=True, fp16=half))
    if requested in ("auto", "onnxruntime"):
        ok, why = cuda_available()
        if ok and gpu is None:
            ok, why = False, find_gpu_reason
        if ok:
            candidates.append(Candidate("onnxruntime", gpu=True))
        else:
            notes.append(f"onnxruntime CUDA skipped: {why}")
        candidates.append(Candidate("onnxruntime", gpu=False))
    # A GPU that goes unused deserves a warning; on a machine without one, the CPU is simply expected.
    report = log.warning if gpu is not None and not candidates[0].gpu else log.info
    for note in notes:
        report("%s", note)
    return candidates, notes


def open_engine(candidate: Candidate, graph: PreparedGraph, *, threads: int | None = None,
                on_status: Callable[[str], None] | None = None) -> Engine:
    """Open the engine for a candidate; `on_status` hears about slow steps (a TensorRT engine build)."""
    if candidate.backend == "tensorrt":
        from .tensorrt import TensorRTEngine

        return TensorRTEngine(graph, on_status=on_status)
    from .onnxruntime import OnnxRuntimeEngine

    return OnnxRuntimeEngine(graph, cuda=candidate.gpu, threads=threads)


__all__ = ["BACKENDS", "Candidate", "Engine", "open_engine", "plan"]
