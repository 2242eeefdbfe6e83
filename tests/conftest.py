"""Shared test setup: real clips (and the model file the bundled one is made from) from the shared data folder, an
isolated cache, and no model downloads.

The data folder defaults to ../shared beside the checkout; OBS_RVM_TEST_DATA overrides it. Without it the tests
cannot run at all, so a missing folder fails loudly instead of skipping everything.

The default model is what a user gets offline: the release URL points at a local port that refuses connections
and the models folder is empty, so every test process (and every program it starts) keys with the bundled
mobilenetv3-web, which is byte for byte the shared test model. OBS_RVM_MODEL set before pytest starts still
replaces it (a run against another model file).
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

from paths import MODEL

if not MODEL.is_file():
    raise pytest.UsageError(f"test model not found at {MODEL}: set OBS_RVM_TEST_DATA to the shared data folder")

_CLOSED = socket.socket()
_CLOSED.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused at once, and no one else gets it
CLOSED_URL = f"http://127.0.0.1:{_CLOSED.getsockname()[1]}/release"
"""A release URL no download can reach, as on a machine without internet."""

os.environ["OBS_RVM_RELEASE_URL"] = CLOSED_URL
os.environ["OBS_RVM_MODEL_DIR"] = tempfile.mkdtemp(prefix="obs-rvm-test-models-")
os.environ.setdefault("OBS_RVM_CACHE_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / "obs-rvm-test-cache"))


@pytest.fixture
def clean_model_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No model override, no installer record and an empty model folder: what a user without the test model sees."""
    monkeypatch.delenv("OBS_RVM_MODEL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("OBS_RVM_MODEL_DIR", str(tmp_path / "models"))
    return tmp_path / "models"
