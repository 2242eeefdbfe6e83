"""Is there an NVIDIA GPU, and which? Asked of the CUDA driver itself (libcuda via ctypes).

Backend selection needs the answer before importing TensorRT or onnxruntime's CUDA provider, and it needs the reason
when the answer is no ("no NVIDIA driver", "no CUDA device") so the fallback can say why. The driver API is stable
C (cuInit, cuDeviceGetCount, cuDeviceGetName, cuDeviceGetAttribute), so a few ctypes calls answer without any CUDA
Python package installed.
"""

from __future__ import annotations

import ctypes
import sys
from dataclasses import dataclass
from functools import lru_cache

CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR = 75
CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR = 76
DRIVER_LIBRARY = "nvcuda.dll" if sys.platform == "win32" else "libcuda.so.1"
MIN_TENSORRT_CAPABILITY = (7, 5)
"""TensorRT 10.5 and later support Turing (7.5) and newer only: Volta (7.0) and Pascal (6.x) were dropped."""
TENSORRT_RTX_CAPABILITIES = ((8, 6), (8, 9))
"""ONNX Runtime's TensorRT-RTX provider (wheel 0.5.0) runs on these and on 12.0 and newer (RTX 30, RTX 40, RTX 50):
its library refuses every other GPU, data-centre Ampere and Hopper (8.0, 9.0) and Turing (7.5) included."""


@dataclass(frozen=True)
class GpuInfo:
    """The CUDA device obs-rvm runs on (device 0; CUDA_VISIBLE_DEVICES picks another)."""

    name: str
    compute_capability: tuple[int, int]

    @property
    def tensorrt_supported(self) -> bool:
        return self.compute_capability >= MIN_TENSORRT_CAPABILITY

    @property
    def fast_fp16(self) -> bool:
        """Whether TensorRT should build FP16 here. Every GPU TensorRT 10.5+ supports (7.5+) runs FP16 at full rate
        or better (CUDA programming guide, throughput table); the older full-rate ones (5.3, 6.0, 6.2, 7.0) are not
        TensorRT's any more, and 6.1 runs FP16 at 1/64 rate."""
        return self.tensorrt_supported

    @property
    def tensorrt_rtx_supported(self) -> bool:
        return self.compute_capability in TENSORRT_RTX_CAPABILITIES or self.compute_capability >= (12, 0)

    def describe(self) -> str:
        major, minor = self.compute_capability
        return f"{self.name}, compute capability {major}.{minor}"


def _error(lib: ctypes.CDLL, code: int) -> str:
    text = ctypes.c_char_p()
    try:
        if lib.cuGetErrorString(code, ctypes.byref(text)) == 0 and text.value:
            return f"{text.value.decode(errors='replace')} (CUDA error {code})"
    except AttributeError:
        pass
    return f"CUDA error {code}"


@lru_cache(maxsize=1)
def find_gpu() -> tuple[GpuInfo | None, str]:
    """(the first CUDA device, "") or (None, why there is none). Probed once per process."""
    try:
        lib = ctypes.CDLL(DRIVER_LIBRARY)
    except OSError:
        return None, f"no NVIDIA driver ({DRIVER_LIBRARY} not found)"
    code = lib.cuInit(0)
    if code != 0:
        return None, f"no CUDA device (the NVIDIA driver reports: {_error(lib, code)})"
    count = ctypes.c_int(0)
    code = lib.cuDeviceGetCount(ctypes.byref(count))
    if code != 0 or count.value < 1:
        return None, "no CUDA device (the NVIDIA driver is installed but sees no GPU)"
    device = ctypes.c_int(0)
    name = ctypes.create_string_buffer(256)
    major, minor = ctypes.c_int(0), ctypes.c_int(0)
    codes = (lib.cuDeviceGet(ctypes.byref(device), 0),
             lib.cuDeviceGetName(name, len(name), device),
             lib.cuDeviceGetAttribute(ctypes.byref(major), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR, device),
             lib.cuDeviceGetAttribute(ctypes.byref(minor), CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MINOR, device))
    bad = next((c for c in codes if c != 0), 0)
    if bad:
        return None, f"CUDA device 0 cannot be queried ({_error(lib, bad)})"
    return GpuInfo(name.value.decode(errors="replace").strip(), (major.value, minor.value)), ""
