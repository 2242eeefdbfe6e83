"""The one interface every inference backend implements."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping

import numpy as np

from ..errors import InputError
from ..graph import FRAME, PreparedGraph


class Engine(ABC):
    """Runs one prepared graph frame after frame and keeps RVM's recurrent state between calls.

    `run` returns the keyed RGBA frame; the array may be reused by the next call, so copy it to keep it.
    Extra inputs (background, blur matrices) are passed every call; backends that keep inputs on the device upload
    one only when a different array object arrives.
    """

    backend: str
    """"onnxruntime" or "tensorrt"."""
    device: str
    """Where it runs, for humans: "CPU", "CUDA (NVIDIA ...)"."""

    def __init__(self, graph: PreparedGraph) -> None:
        self.graph = graph
        self.frame_shape = graph.inputs[FRAME][0]

    def describe(self) -> str:
        return f"{self.backend} on {self.device}"

    def check_frame(self, frame: np.ndarray) -> None:
        if frame.shape != self.frame_shape or frame.dtype != np.uint8:
            raise InputError(f"frame must be uint8 {self.frame_shape} RGBA, got {frame.dtype} {frame.shape}")

    @abstractmethod
    def run(self, frame: np.ndarray, extra: Mapping[str, np.ndarray]) -> np.ndarray:
        """Key one uint8 RGBA frame, feeding the recurrent state back for the next one."""

    @abstractmethod
    def reset(self) -> None:
        """Forget the recurrent state (new scene, new source)."""

    def close(self) -> None:  # noqa: B027 - a default, not a stub
        """Free device memory and sessions; the default holds nothing that Python's GC would not free."""
