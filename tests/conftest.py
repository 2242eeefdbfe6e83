"""Shared test setup: the real RVM model and clips from the shared data folder, and an isolated cache.

The data folder defaults to ../shared beside the checkout; OBS_RVM_TEST_DATA overrides it. Without it the tests
cannot run at all, so a missing folder fails loudly instead of skipping everything.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from paths import MODEL

if not MODEL.is_file():
    raise pytest.UsageError(f"test model not found at {MODEL}: set OBS_RVM_TEST_DATA to the shared data folder")

# Every test process (and the programs it starts) uses the real test model and a cache of its own.
os.environ["OBS_RVM_MODEL"] = str(MODEL)
os.environ.setdefault("OBS_RVM_CACHE_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / "obs-rvm-test-cache"))


@pytest.fixture
def clean_model_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No model override, no installer record and an empty model folder: what a user without the test model sees."""
    monkeypatch.delenv("OBS_RVM_MODEL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("OBS_RVM_MODEL_DIR", str(tmp_path / "models"))
    return tmp_path / "models"
