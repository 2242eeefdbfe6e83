"""onnxruntime backend: the CPU everywhere, CUDA when onnxruntime-gpu is installed and a device exists, and the plugin
providers (TensorRT-RTX, WebGPU, OpenVINO; plugin_eps.py) on the device the plan chose: one engine, one graph."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np

from ..errors import BackendError
from ..graph import FRAME, OUTPUT, STATE_INPUTS, STATE_OUTPUTS, PreparedGraph
from ..paths import cache_dir
from .base import Engine
from .plugin_eps import PLUGINS, EpDevice
from .shared import SharedObjects


def cuda_available() -> tuple[bool, str]:
    """Whether onnxruntime can run on CUDA here, and if not, why (for the fallback message)."""
    try:
        import onnxruntime as ort
    except ImportError:
        return False, "onnxruntime is not installed"
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return False, "onnxruntime has no CUDA provider (onnxruntime-gpu not installed)"
    return True, ""


def provider_options(provider: str, graph: PreparedGraph, device: EpDevice) -> dict[str, str]:
    """Options for a plugin provider: its caches under obs-rvm's cache folder, where it has one.

    TensorRT-RTX builds its engine when the session opens (seconds) and keeps it in a runtime cache folder, keyed
    here like TensorRT's own engine cache: the GPU, the provider's version and the prepared graph. OpenVINO caches
    compiled blobs in one folder it keys itself. WebGPU has no cache to keep.
    """
    if provider == "tensorrt-rtx":
        from .gpu import find_gpu
        from .trt_cache import cache_key

        gpu = find_gpu()[0]
        fields = {"gpu": gpu.name if gpu else "", "compute_capability": gpu.compute_capability if gpu else (),
                  "provider": device.metadata.get("version", ""), "graph": graph.cache_key}
        return {"nv_runtime_cache_path": str(_folder(cache_dir("tensorrt-rtx") / cache_key(fields)))}
    if provider == "openvino":
        return {"cache_dir": str(_folder(cache_dir("openvino")))}
    return {}


_sessions: SharedObjects[tuple, object] = SharedObjects()
"""(graph file, threads, providers) -> session: filters keying the same graph at the same size share one session (a
720p session's arena holds a few hundred MiB); each engine keeps its own recurrent state."""


def _reason(error: Exception) -> str:
    """onnxruntime's message without the source location of its check: "... cc:136 <function> <condition> was
    false. Failed to get a WebGPU adapter: No supported adapters" says the last sentence to a user."""
    text = " ".join(str(error).split())
    return text.split(" was false. ", 1)[-1]


def _folder(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


class OnnxRuntimeEngine(Engine):
    backend = "onnxruntime"

    def __init__(self, graph: PreparedGraph, *, cuda: bool = False, threads: int | None = None,
                 provider: str = "", device: EpDevice | None = None) -> None:
        """CPU, CUDA (`cuda`), or a plugin provider (`provider` with its `device`, from the plan)."""
        super().__init__(graph)
        self._shared_key: tuple | None = None
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
        if device is not None:
            # The plugin provider takes what it can; onnxruntime's CPU provider runs the rest of the graph.
            plugin = PLUGINS[provider]
            try:
                options.add_provider_for_devices([device.handle], provider_options(provider, graph, device))
                self.session = ort.InferenceSession(str(graph.path), options)
            except Exception as e:  # onnxruntime's own exception types: a provider that cannot compile or start
                raise BackendError(f"the {plugin.title} provider could not open the prepared graph: "
                                   f"{_reason(e)}") from e
            if plugin.ep_name not in self.session.get_providers():
                raise BackendError(f"the {plugin.title} provider did not start (onnxruntime runs "
                                   f"{', '.join(self.session.get_providers())})")
            self.device = f"{plugin.title} ({device.describe()})"
        else:
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"] if cuda else ["CPUExecutionProvider"]
            key = (str(graph.path), threads, tuple(providers))
            try:
                self.session = _sessions.acquire(key, lambda: ort.InferenceSession(str(graph.path), options,
                                                                                   providers=providers))
            except Exception as e:  # onnxruntime raises its own exception types for OOM, bad graphs, CUDA failures
                raise BackendError(f"onnxruntime could not load the prepared graph: {e}") from e
            self._shared_key = key
            if cuda and self.session.get_providers()[0] != "CUDAExecutionProvider":
                self.close()
                raise BackendError("onnxruntime's CUDA provider could not start (no CUDA device or CUDA libraries)")
            self.device = "CUDA" if cuda else f"CPU ({threads or 'all'} thread{'' if threads == 1 else 's'})"
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
        """Drop the session now (its arena holds a few hundred MiB at 720p), not whenever the engine is collected;
        a session shared with other engines goes with the last of them."""
        if self._shared_key is not None:
            _sessions.release(self._shared_key)
            self._shared_key = None
        self.session = None
