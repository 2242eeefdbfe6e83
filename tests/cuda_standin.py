"""A stand-in for the NVIDIA driver's libcuda.so.1 on a machine without one, for the installer's GPU test.

pycuda's module binds every driver function it uses when it loads, so the stand-in exports every function cuda.h
and cudaProfiler.h declare, under the names the header's macros turn them into (cuCtxCreate -> cuCtxCreate_v2),
found by running the C preprocessor over the very headers pycuda compiles against. cuInit answers
CUDA_ERROR_NO_DEVICE (100), as a driver with no usable GPU does; everything else answers
CUDA_ERROR_NOT_INITIALIZED (3). So an import succeeds and everything past it fails the way it fails on a PC whose
GPU is missing: the test stops where a driver is needed.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

CUDA_ERROR_NO_DEVICE = 100
_BODIES = {
    "cuInit": f"int cuInit(unsigned int flags) {{ (void)flags; return {CUDA_ERROR_NO_DEVICE}; }}",
    "cuDriverGetVersion": "int cuDriverGetVersion(int *v) { *v = 12040; return 0; }",
    "cuGetErrorString": ('int cuGetErrorString(int e, const char **s) '
                         '{ *s = e == 100 ? "no CUDA-capable device is detected (stand-in driver)" '
                         ': "stand-in driver"; return 0; }'),
    "cuGetErrorName": ('int cuGetErrorName(int e, const char **s) '
                       '{ *s = e == 100 ? "CUDA_ERROR_NO_DEVICE" : "CUDA_ERROR_NOT_INITIALIZED"; return 0; }'),
}


HEADERS = ("cuda.h", "cudaProfiler.h")
"""The driver API headers pycuda's module compiles against (cudaProfiler.h: cuProfilerStart/Stop)."""


def driver_symbols(include: list[Path]) -> list[str]:
    """Every driver function name the headers declare, before and after cuda.h's versioning macros."""
    headers = [next(folder / h for folder in include if (folder / h).is_file()) for h in HEADERS]
    names = sorted({n for header in headers for n in re.findall(r"CUDAAPI\s+(cu\w+)\s*\(", header.read_text())})
    probe = "".join(f"#include <{h}>\n" for h in HEADERS) + "".join(f"OBSRVM_{name} {name}\n" for name in names)
    flags = [f"-I{folder}" for folder in include]
    out = subprocess.run(["gcc", "-E", "-P", *flags, "-x", "c", "-"], input=probe, capture_output=True,
                         text=True, check=True).stdout
    expanded = re.findall(r"^OBSRVM_\w+\s+(\w+)\s*$", out, re.MULTILINE)
    return sorted(set(names) | set(expanded))


def make_libcuda(include: list[Path], folder: Path) -> Path:
    """Compile folder/libcuda.so.1 exporting every driver function of the headers in `include`; returns its path."""
    folder.mkdir(parents=True, exist_ok=True)
    lines = [_BODIES.get(name, f"int {name}(void) {{ return 3; }}") for name in driver_symbols(include)]
    source = folder / "libcuda_standin.c"
    source.write_text("\n".join(lines) + "\n")
    library = folder / "libcuda.so.1"
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(library), "-Wl,-soname,libcuda.so.1", str(source)],
                   check=True)
    return library
