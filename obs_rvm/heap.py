"""Give freed heap memory back to the operating system after a big release (an engine or a session closed).

glibc keeps freed memory in its arenas for reuse; after an onnxruntime session of a few hundred MiB is gone, much
of it stays mapped, and a long-running host (OBS through an evening of settings changes) grows with every rebuild.
malloc_trim returns it (measured: a 720p session's 40 MiB left after close goes back). Elsewhere this is a no-op.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
from functools import cache


@cache
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):  # musl and other C libraries have no malloc_trim
        return None
    trim.argtypes, trim.restype = [ctypes.c_size_t], ctypes.c_int
    return trim


def release_free_memory() -> None:
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
