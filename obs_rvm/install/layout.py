"""Where the installer puts things. The same folders platformdirs gives on Linux (tests check it), computed by hand
because the installer runs before platformdirs is installed."""

from __future__ import annotations

import os
from pathlib import Path

from ..paths import APP


def _xdg(variable: str, default: str) -> Path:
    value = os.environ.get(variable, "").strip()
    return Path(value) if value else Path.home() / default


def data_dir() -> Path:
    """~/.local/share/obs-rvm: the environment, downloaded models, the installer's record."""
    return _xdg("XDG_DATA_HOME", ".local/share") / APP


def cache_root() -> Path:
    """~/.cache/obs-rvm: prepared graphs, TensorRT engines, model hashes (all derived, all rebuildable)."""
    return _xdg("XDG_CACHE_HOME", ".cache") / APP


def venv_dir() -> Path:
    return data_dir() / "venv"


def state_file() -> Path:
    """What the installer added, so a re-run knows what it did and --uninstall what to take away."""
    return data_dir() / "install-state.json"


def bin_link() -> Path:
    """~/.local/bin/obs-rvm: on the PATH of Debian/Ubuntu desktop sessions, so `obs-rvm doctor` just works."""
    return Path.home() / ".local" / "bin" / APP


def site_packages(venv: Path, python_version: str) -> Path:
    return venv / "lib" / f"python{python_version}" / "site-packages"


def script_path(venv: Path, python_version: str) -> Path:
    """The file the user adds in OBS (Tools > Scripts)."""
    return site_packages(venv, python_version) / "obs_rvm" / "obs_script.py"


def is_our_script(path: str) -> bool:
    """An OBS script entry that points at an obs-rvm environment made by the installer (any Python version)."""
    p = Path(path)
    return p.parts[-2:] == ("obs_rvm", "obs_script.py") and venv_dir() in p.parents
