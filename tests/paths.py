"""Where the shared test data lives: ../shared beside the checkout, or $OBS_RVM_TEST_DATA."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
DATA = Path(os.environ.get("OBS_RVM_TEST_DATA", REPO.parent / "shared")).resolve()
MODEL = DATA / "models" / "rvm_mobilenetv3_tfjs_int8_dequant.onnx"
MEDIA = DATA / "media"
CLIPS = MEDIA / "clips"
ASTRONAUT = MEDIA / "astronaut.png"
