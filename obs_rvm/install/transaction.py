"""What an installer run changes: undone in reverse if the run fails, and a record kept between runs (install
state) so a re-run knows what is already done and --uninstall what to take away."""

from __future__ import annotations

import errno
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from ..environment import config_dir as rvm_config_dir
from ..errors import SetupError
from . import layout


class Transaction:
    """Everything this run created, rewrote or moved aside, with how to undo it."""

    def __init__(self) -> None:
        self._undo: list[tuple[str, Callable[[], None]]] = []

    def created(self, path: Path) -> None:
        def undo() -> None:
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()

        self._undo.append((f"removed {path}", undo))

    def replaced(self, path: Path) -> None:
        """`path` (a file) is about to be rewritten: keep its bytes to put back."""
        data = path.read_bytes()
        self._undo.append((f"restored {path}", lambda: path.write_bytes(data)))

    def moved_aside(self, path: Path, aside: Path) -> None:
        def undo() -> None:
            if path.exists():
                shutil.rmtree(path)
            aside.rename(path)

        self._undo.append((f"put back {path}", undo))

    def rollback(self) -> list[str]:
        """Undo everything, newest first; returns what was done (and what could not be)."""
        done = []
        for what, undo in reversed(self._undo):
            try:
                undo()
                done.append(what)
            except OSError as e:
                done.append(f"could not undo ({what}: {e})")
        self._undo.clear()
        return done


def make_dir(path: Path, tx: Transaction, why: str) -> None:
    """Create a folder the run needs (recorded for undo), or fail before anything else changes."""
    missing = [p for p in [path, *path.parents] if not p.exists()]
    try:
        if not missing and not os.access(path, os.W_OK | os.X_OK):
            raise PermissionError(errno.EACCES, "permission denied")
        path.mkdir(parents=True, exist_ok=True)  # also fails under a regular file, or in /proc
    except OSError as e:
        raise SetupError(f"cannot write to {path} ({why}): {e.strerror or e}; check the folder's owner and "
                         f"permissions, or set {_xdg_variable(path)} to a writable folder") from e
    if missing:
        tx.created(missing[-1])  # the outermost folder this run made, with everything in it


def _xdg_variable(path: Path) -> str:
    for variable, folder in (("XDG_DATA_HOME", layout.data_dir()), ("XDG_CONFIG_HOME", rvm_config_dir()),
                             ("XDG_CACHE_HOME", layout.cache_root())):
        if path == folder or folder in path.parents or path in folder.parents:
            return variable
    return "HOME"


def read_state() -> dict:
    try:
        data = json.loads(layout.state_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_state(state: dict, tx: Transaction) -> None:
    """Write the record only when it changed, so a re-run with nothing to do leaves every file as it was."""
    path = layout.state_file()
    if path.exists():
        if read_state() == state:
            return
        tx.replaced(path)
    else:
        tx.created(path)
    path.write_text(json.dumps(state, indent=2) + "\n", encoding="utf-8")
