"""Where the shared test data lives: $OBS_RVM_TEST_DATA, else ../shared beside the checkout, else /work/shared."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
_CANDIDATES = [os.environ.get("OBS_RVM_TEST_DATA"), REPO.parent / "shared", "/work/shared"]
DATA = next((Path(c).resolve() for c in _CANDIDATES if c and (Path(c) / "models").is_dir()), REPO.parent / "shared")
MODEL = DATA / "models" / "rvm_mobilenetv3_tfjs_int8_dequant.onnx"
MEDIA = DATA / "media"
CLIPS = MEDIA / "clips"
ASTRONAUT = MEDIA / "astronaut.png"
