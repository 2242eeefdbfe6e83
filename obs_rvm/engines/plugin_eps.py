"""ONNX Runtime's plugin execution providers: TensorRT for RTX, WebGPU and OpenVINO, each a binary wheel on PyPI.

Each wheel holds one shared library that onnxruntime (1.24 and later) loads at run time: we import the wheel's small
Python package for the library's path, register it with `onnxruntime.register_execution_provider_library`, and ask
`onnxruntime.get_ep_devices()` which devices the provider offers here. A device is what a session is then opened on
(`SessionOptions.add_provider_for_devices`). Registration is process-wide and done once per provider; everything
that goes wrong (wheel missing, library that will not load, no device) becomes a one-line reason for the plan.

Planning only needs plain facts about each device (`EpDevice`), so tests describe devices of machines they are not
on (an Intel iGPU, an RTX card) without onnxruntime having to see them.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

log = logging.getLogger("obs_rvm")

SOFTWARE_ADAPTER_VARIABLE = "ORT_WEBGPU_EP_ALLOW_SOFTWARE_ADAPTER"
"""Set to 1, the WebGPU provider also offers a software Vulkan driver (Mesa's lavapipe) as a device, attached to the
CPU. It computes on the CPU, far slower than the CPU provider: for checking the provider's results, never chosen
without this variable (onnxruntime does not list it without it either)."""


@dataclass(frozen=True)
class Plugin:
    """One plugin provider: the backend name users pick, the wheel that carries it and the name onnxruntime uses."""

    backend: str
    title: str
    module: str
    wheel: str
    ep_name: str


PLUGINS: dict[str, Plugin] = {p.backend: p for p in (
    Plugin("tensorrt-rtx", "TensorRT-RTX", "onnxruntime_ep_nv_tensorrt_rtx", "onnxruntime-ep-nv-tensorrt-rtx-cu12",
           "NvTensorRTRTXExecutionProvider"),
    Plugin("webgpu", "WebGPU", "onnxruntime_ep_webgpu", "onnxruntime-ep-webgpu", "WebGpuExecutionProvider"),
    Plugin("openvino", "OpenVINO", "onnxruntime_ep_openvino", "onnxruntime-ep-openvino", "OpenVINOExecutionProvider"),
)}

MIN_ONNXRUNTIME = (1, 24)
"""The first onnxruntime that loads plugin providers as the wheels expect (WebGPU asks for 1.24.4)."""


@dataclass(frozen=True)
class EpDevice:
    """A device a plugin provider offers: what planning reads, and onnxruntime's own object to open a session with."""

    ep_name: str
    kind: str
    """The hardware behind it: "GPU", "CPU" or "NPU" (WebGPU's software adapter is attached to the CPU)."""
    vendor: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict, hash=False)
    """The provider's and the hardware's metadata together (OpenVINO's "ov_device", the provider's "version")."""
    handle: object = field(default=None, compare=False, repr=False)
    """onnxruntime's OrtEpDevice (None for a described device that no onnxruntime has seen)."""

    def describe(self) -> str:
        if self.ep_name == PLUGINS["webgpu"].ep_name and self.kind == "CPU":
            return "software Vulkan adapter on the CPU"
        what = self.metadata.get("ov_device") or self.kind
        return f"{self.vendor} {what}".strip() if self.vendor else what


_lock = threading.Lock()
_registered: dict[str, str] = {}
"""backend -> "" once its library is registered, or why it could not be (asked once per process)."""


def _onnxruntime_version(ort) -> tuple[int, ...]:
    parts = []
    for part in ort.__version__.split(".")[:2]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits or 0))
    return tuple(parts)


def _preload_cudart(library: Path) -> None:
    """TensorRT-RTX's wheel (0.5.0) ships libcudart.so.12.9.79 but no libcudart.so.12 for its provider library's
    NEEDED entry, so on a PC without a CUDA toolkit the provider does not load. Loading the bundled file first
    satisfies that entry (the loader knows it by its soname)."""
    for cudart in sorted(library.parent.glob("libcudart.so.*")):
        try:
            ctypes.CDLL(str(cudart), mode=ctypes.RTLD_GLOBAL)
        except OSError as e:
            log.debug("could not preload %s: %s", cudart, e)
        return


def register(backend: str) -> str:
    """Load the backend's provider library into onnxruntime (once per process); "" when it is there, else why not."""
    plugin = PLUGINS[backend]
    with _lock:
        if backend in _registered:
            return _registered[backend]
        try:
            import onnxruntime as ort
        except ImportError:
            why = "onnxruntime is not installed"
        else:
            why = _register(ort, plugin)
        _registered[backend] = why
        return why


def _register(ort, plugin: Plugin) -> str:
    install = f"pip install {plugin.wheel}"
    if _onnxruntime_version(ort) < MIN_ONNXRUNTIME:
        return (f"onnxruntime {ort.__version__} cannot load plugin providers ({install} 'onnxruntime>="
                f"{MIN_ONNXRUNTIME[0]}.{MIN_ONNXRUNTIME[1]}')")
    try:
        package = importlib.import_module(plugin.module)
    except ImportError:
        return f"{plugin.wheel} not installed ({install})"
    try:
        library = Path(package.get_library_path())
        if plugin.backend == "tensorrt-rtx":
            _preload_cudart(library)
        ort.register_execution_provider_library(plugin.backend, str(library))
    except Exception as e:  # onnxruntime raises its own Fail for a library that will not load; the packages OSError
        text = " ".join(str(e).split()) or type(e).__name__
        return f"its library does not load: {text.split('with error: ', 1)[-1]}"
    return ""


def devices(backend: str) -> tuple[list[EpDevice], str]:
    """The devices the backend's provider offers here, or ([], why there are none)."""
    why = register(backend)
    if why:
        return [], why
    import onnxruntime as ort

    plugin = PLUGINS[backend]
    found = []
    for d in ort.get_ep_devices():
        if d.ep_name != plugin.ep_name:
            continue
        hardware = d.device
        metadata = {**dict(hardware.metadata), **dict(d.ep_metadata)}
        found.append(EpDevice(d.ep_name, hardware.type.name, hardware.vendor, metadata, d))
    if not found:
        return [], f"the {plugin.title} provider finds no device here{_no_device_hint(backend)}"
    return found, ""


def _no_device_hint(backend: str) -> str:
    if backend == "webgpu":
        return " (no GPU with a Vulkan driver: install your GPU's Vulkan driver and libvulkan1)"
    if backend == "openvino":
        return " (it runs on Intel CPUs, GPUs and NPUs)"
    return ""


def software_adapters_allowed() -> bool:
    return os.environ.get(SOFTWARE_ADAPTER_VARIABLE, "") == "1"


def choose(backend: str, found: list[EpDevice], *, gpu_only: bool,
           allow_software: bool = False) -> tuple[EpDevice | None, str]:
    """The device to run on among those the provider offers, or (None, why none fits).

    GPUs first. WebGPU's CPU-attached device is a software Vulkan driver: taken only with `allow_software` (the
    user set SOFTWARE_ADAPTER_VARIABLE), never in its place silently. OpenVINO also offers Intel CPUs and NPUs:
    taken when asked for by name (`gpu_only` False), since the CPU provider is the known default otherwise.
    """
    title = PLUGINS[backend].title
    gpus = [d for d in found if d.kind == "GPU"]
    if gpus:
        return gpus[0], ""
    if backend == "webgpu":
        software = [d for d in found if d.kind == "CPU"]
        if software and allow_software:
            return software[0], ""
        return None, (f"the {title} provider offers no GPU here (only a software adapter, which "
                      f"{SOFTWARE_ADAPTER_VARIABLE}=1 allows)" if software else
                      f"the {title} provider offers no GPU here{_no_device_hint(backend)}")
    if not gpu_only:
        for kind in ("NPU", "CPU"):
            other = [d for d in found if d.kind == kind]
            if other:
                return other[0], ""
    kinds = ", ".join(sorted({d.describe() for d in found})) or "nothing"
    return None, f"the {title} provider offers no GPU here (only {kinds})"
