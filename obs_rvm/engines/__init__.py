"""Backend selection: which engine runs the prepared graph here, and why the better ones were skipped."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

from ..errors import BackendError
from ..graph import PreparedGraph
from .base import Engine
from .gpu import GpuInfo
from .plugin_eps import EpDevice, choose

log = logging.getLogger("obs_rvm")

BACKENDS = ("auto", "tensorrt", "tensorrt-rtx", "cuda", "webgpu", "openvino", "cpu", "onnxruntime")
"""What a user can ask for. "onnxruntime" is the saved value of before the providers were named: onnxruntime's CUDA
provider where it can run, else its CPU provider."""
PROVIDERS = ("tensorrt", "tensorrt-rtx", "cuda", "webgpu", "openvino", "cpu")
"""What runs a candidate: TensorRT itself, or one of onnxruntime's execution providers."""
TITLES = {"tensorrt": "TensorRT", "tensorrt-rtx": "TensorRT-RTX", "cuda": "onnxruntime CUDA", "webgpu": "WebGPU",
          "openvino": "OpenVINO", "cpu": "onnxruntime CPU"}


@dataclass(frozen=True)
class Candidate:
    """One way to run the graph: an engine ("tensorrt" or "onnxruntime") and what runs it, in FP16 or FP32."""

    backend: str
    gpu: bool
    fp16: bool = False
    """Whether this candidate runs the FP16 graph (TensorRT, or TensorRT-RTX, on a GPU with fast FP16, unless FP32
    was asked for)."""
    provider: str = ""
    """What runs it (one of PROVIDERS); left out: "tensorrt" for TensorRT, onnxruntime's "cuda" or "cpu" by `gpu`."""
    device: EpDevice | None = None
    """The device a plugin provider (tensorrt-rtx, webgpu, openvino) runs on."""

    def __post_init__(self) -> None:
        if not self.provider:
            default = "tensorrt" if self.backend == "tensorrt" else "cuda" if self.gpu else "cpu"
            object.__setattr__(self, "provider", default)

    @property
    def pad_conv_channels(self) -> bool:
        """The graph this candidate runs has its Convs' input channels padded to multiples of 4 (graph_build.py):
        onnxruntime's WebGPU provider computes some of them wrongly otherwise."""
        return self.provider == "webgpu"

    def label(self) -> str:
        if self.device is not None:
            return f"{self.backend} {TITLES[self.provider]} ({self.device.describe()})"
        return f"{self.backend} ({'GPU' if self.gpu else 'CPU'})"


class Probe:
    """What planning asks of this machine, each question asked only when the plan gets to it (a provider library
    takes time and memory to load). Tests subclass it to describe a machine they are not on."""

    def nvidia(self) -> tuple[GpuInfo | None, str]:
        """The NVIDIA GPU, or (None, why there is none)."""
        from .gpu import find_gpu

        return find_gpu()

    def tensorrt(self) -> list[str]:
        """Why TensorRT cannot run here; empty when it can."""
        from .tensorrt import availability

        return availability()[1]

    def cuda_provider(self) -> tuple[bool, str]:
        from .onnxruntime import cuda_available

        return cuda_available()

    def plugin_devices(self, provider: str) -> tuple[list[EpDevice], str]:
        from .plugin_eps import devices

        return devices(provider)

    def software_adapters_allowed(self) -> bool:
        from .plugin_eps import software_adapters_allowed

        return software_adapters_allowed()


def plan(requested: str, fp16: bool = True, probe: Probe | None = None) -> tuple[list[Candidate], list[str]]:
    """Candidates to try in order for a backend request, and notes on why better ones were skipped.

    auto: TensorRT, TensorRT-RTX, onnxruntime's CUDA provider, then WebGPU and OpenVINO (OpenVINO first without an
    NVIDIA GPU: it is Intel's own), then the CPU. "onnxruntime": CUDA, else the CPU. Any other name is that one
    alone. An explicit request that cannot be met raises BackendError saying what to install or choose instead:
    asking for the GPU never silently runs on the CPU.
    """
    if requested not in BACKENDS:
        raise BackendError(f"unknown backend '{requested}': choose one of {', '.join(BACKENDS)}")
    probe = probe or Probe()
    gpu, no_gpu = probe.nvidia()
    if requested == "auto":
        plugins = ["webgpu", "openvino"] if gpu is not None else ["openvino", "webgpu"]
        order = ["tensorrt", "tensorrt-rtx", "cuda", *plugins, "cpu"]
    elif requested == "onnxruntime":
        order = ["cuda", "cpu"]
    else:
        order = [requested]
    notes: list[str] = []
    candidates: list[Candidate] = []
    for provider in order:
        candidate, why = _consider(provider, probe, fp16, gpu, no_gpu, explicit=requested == provider)
        if candidate is not None:
            candidates.append(candidate)
            if candidate.provider == "tensorrt" and fp16 and not candidate.fp16 and gpu is not None:
                notes.append(f"FP16 is slow on {gpu.describe()}: TensorRT builds FP32")
        elif requested == provider:
            raise BackendError(f"the {requested} backend cannot run here: {why}. Choose backend auto to fall back "
                               f"to {'onnxruntime' if requested == 'tensorrt' else 'what runs here'}")
        else:
            notes.append(f"{TITLES[provider]} skipped: {why}")
    # A GPU that goes unused deserves a warning; on a machine without one, the CPU is simply expected.
    report = log.warning if gpu is not None and not candidates[0].gpu else log.info
    for note in notes:
        report("%s", note)
    return candidates, notes


def _consider(provider: str, probe: Probe, fp16: bool, gpu: GpuInfo | None, no_gpu: str,
              explicit: bool) -> tuple[Candidate | None, str]:
    """The candidate for one provider, or (None, why it cannot run here) in words a user can act on."""
    if provider == "tensorrt":
        reasons = probe.tensorrt()
        if reasons or gpu is None:
            return None, "; ".join(reasons) or no_gpu
        return Candidate("tensorrt", gpu=True, fp16=fp16 and gpu.fast_fp16), ""
    if provider == "cuda":
        ok, why = probe.cuda_provider()
        if ok and gpu is None:
            return None, no_gpu
        if not ok:
            return None, f"{why}{' (pip install onnxruntime-gpu)' if explicit else ''}"
        return Candidate("onnxruntime", gpu=True), ""
    if provider == "cpu":
        return Candidate("onnxruntime", gpu=False), ""
    if provider == "tensorrt-rtx":
        if gpu is None:
            return None, no_gpu
        if not gpu.tensorrt_rtx_supported:
            return None, (f"it runs on RTX GPUs of compute capability 8.6, 8.9 and 12.0 or newer (RTX 30 and later), "
                          f"not on {gpu.describe()}: the tensorrt or cuda backend runs there")
    found, why = probe.plugin_devices(provider)
    if why:
        return None, why
    device, why = choose(provider, found, gpu_only=not explicit, allow_software=probe.software_adapters_allowed())
    if device is None:
        return None, why
    on_gpu = device.kind == "GPU"
    half = provider == "tensorrt-rtx" and fp16 and gpu is not None and gpu.fast_fp16
    return Candidate("onnxruntime", gpu=on_gpu, fp16=half, provider=provider, device=device), ""


def open_engine(candidate: Candidate, graph: PreparedGraph, *, threads: int | None = None,
                on_status: Callable[[str], None] | None = None) -> Engine:
    """Open the engine for a candidate; `on_status` hears about slow steps (a TensorRT engine build)."""
    if candidate.backend == "tensorrt":
        from .tensorrt import TensorRTEngine

        return TensorRTEngine(graph, on_status=on_status)
    from .onnxruntime import OnnxRuntimeEngine

    if candidate.device is not None:
        return OnnxRuntimeEngine(graph, threads=threads, provider=candidate.provider, device=candidate.device)
    return OnnxRuntimeEngine(graph, cuda=candidate.provider == "cuda", threads=threads)


__all__ = ["BACKENDS", "PROVIDERS", "Candidate", "Engine", "Probe", "open_engine", "plan"]
