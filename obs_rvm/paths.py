"""Where obs-rvm keeps downloaded models and derived caches (prepared graphs, TensorRT engines).

platformdirs is imported where it is used: the installer runs this module (atomic_write) with a bare system Python.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

APP = "obs-rvm"


def model_dir() -> Path:
    """Folder holding downloaded models; `OBS_RVM_MODEL_DIR` overrides it (tests, shared installs)."""
    import platformdirs

    override = os.environ.get("OBS_RVM_MODEL_DIR")
    return Path(override).expanduser() if override else Path(platformdirs.user_data_dir(APP)) / "models"


def cache_dir(kind: str) -> Path:
    """Folder for one kind of derived artefact ("graphs", "engines"); `OBS_RVM_CACHE_DIR` overrides the root."""
    import platformdirs

    override = os.environ.get("OBS_RVM_CACHE_DIR")
    root = Path(override).expanduser() if override else Path(platformdirs.user_cache_dir(APP))
    return root / kind


@contextmanager
def atomic_write(path: Path, mode: str = "wb") -> Iterator:
    """Write to a temp file beside `path` and rename it into place only if the block succeeds.

    Readers never see a half-written file, and a failure leaves nothing behind.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
