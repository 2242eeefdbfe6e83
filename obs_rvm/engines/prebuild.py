"""Pre-build TensorRT engines into the engine cache, so OBS or the CLI start instantly at these sizes.

Builds exactly what a session would build (same prepared graph, ratio, precision and cache key), then loads each
engine once to prove it works. The one implementation behind `obs-rvm engine build` (which the installer runs) and
scripts/build_trt_engine.py.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from ..graph import GraphSpec, Variant, prepare
from ..matting import auto_downsample_ratio
from ..models import resolve_model
from . import open_engine, plan
from .trt_cache import EngineCache

EXIT_NO_GPU = 3
"""`obs-rvm engine build` exits with this, and says why on its last line, when TensorRT cannot run here at all (no
NVIDIA GPU or driver, TensorRT or pycuda missing): a reason to skip, unlike a build that fails (exit code 1)."""
VARIANTS = tuple(v.value for v in Variant)


def unavailable() -> list[str]:
    """Why TensorRT cannot run here; empty when it can."""
    from .tensorrt import availability

    return availability()[1]


def prebuild(sizes: Iterable[tuple[int, int]], *, model: str | None = None, variants: Iterable[str] = VARIANTS,
             fp16: bool = True, ratio: float | None = None, say: Callable[[str], None] = print) -> None:
    """Build (or find cached) one engine per size and background variant; raises ObsRvmError on failure."""
    candidate = plan("tensorrt", fp16)[0][0]
    resolved = resolve_model(model)
    say(f"engine cache: {EngineCache().folder}")
    for width, height in sizes:
        r = ratio or auto_downsample_ratio(height, width, gpu=True)
        for variant in variants:
            spec = GraphSpec(width, height, r, Variant(variant), fp16=candidate.fp16)
            started = time.monotonic()
            engine = open_engine(candidate, prepare(resolved, spec), on_status=lambda m: say(f"  {m}"))
            state = "built" if engine.built else "already cached"
            say(f"{width}x{height} ratio {r:g} {variant} {'FP16' if spec.fp16 else 'FP32'}: {state} "
                f"({time.monotonic() - started:.0f} s) on {engine.device}")
            engine.close()
