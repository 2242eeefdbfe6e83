"""onnxruntime backend: the CPU everywhere, CUDA when onnxruntime-gpu is installed and a device exists."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from ..errors import BackendError
from ..graph import FRAME, OUTPUT, STATE_INPUTS, STATE_OUTPUTS, PreparedGraph
from .base import Engine


def cuda_available() -> tuple[bool, str]:
    """Whether onnxruntime can run on CUDA here, and if not, why (for the fallback message)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False, "onnxruntime is not installed"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False, "onnxruntime has no CUDA provider (onnxruntime-gpu not installed)"
    return True, ""


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, graph: PreparedGraph, *, cuda: bool = False, threads: int | None = None) -> None:
        super().__init__(graph)
        try:
            import onnxruntime as ort
        except ImportError as e:
            raise BackendError("onnxruntime is not installed: pip install onnxruntime") from e
        options = ort.SessionOptions()
        options.log_severity_level = 3
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # No busy-waiting between ops: the cores are shared with OBS's render thread and with video decode/encode,
        # and spinning measured no faster here.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        if threads:
            options.intra_op_num_threads = threads
        providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
        try:
            self.session = ort.InferenceSession(str(graph.path), options, providers=providers)
        except Exception as e:  # onnxruntime raises its own exception types for OOM, bad graphs and CUDA failures
            raise BackendError(f"onnxruntime could not load the prepared graph: {e}") from e
        if cuda and self.session.get_providers()[0] != "CUDAExecutionProvider":
            raise BackendError("onnxruntime's CUDA provider could not start (no CUDA device or CUDA libraries)")
        self.device = "CUDA" if cuda else f"CPU ({threads or 'all'} threads)"
        self._zero_state = {n: np.zeros(shape, dtype) for n, (shape, dtype) in graph.state_inputs.items()}
        self._state = dict(self._zero_state)

    def run(self, frame: np.ndarray, extra: Mapping[str, np.ndarray]) -> np.ndarray:
        self.check_frame(frame)
        results = self.session.run([OUTPUT, *STATE_OUTPUTS], {FRAME: frame, **self._state, **extra})
        self._state = dict(zip(STATE_INPUTS, results[1:], strict=True))
        return results[0]

    def reset(self) -> None:
        self._state = dict(self._zero_state)

    def close(self) -> None:
        """Drop the session now (its arena holds a few hundred MiB at 720p), not whenever the engine is collected."""
        self.session = None
