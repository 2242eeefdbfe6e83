"""Shared by the installer tests: a scene collection saved by OBS itself, and a stand-in for a running OBS."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from pathlib import Path

DATA = Path(__file__).parent / "data"
COLLECTION = DATA / "obs29-scene-collection.json"
"""Saved by OBS 29.0.2 (Debian) itself: scenes, sources with filters, a text source with non-ASCII text, the stock
url-text.py script with settings, transitions. Compact JSON with %.17g floats, as OBS writes it."""


def fake_obs_process(tmp_path: Path, home: Path) -> subprocess.Popen:
    """A real process named `obs` (what the kernel reports in /proc/PID/comm) running with the given home."""
    binary = tmp_path / "fakebin" / "obs"
    binary.parent.mkdir(exist_ok=True)
    shutil.copy(shutil.which("sleep"), binary)
    env = {k: v for k, v in os.environ.items() if not k.startswith("XDG_")}
    proc = subprocess.Popen([str(binary), "60"], env={**env, "HOME": str(home)})
    # Popen returns once the child is inside execve, and the kernel renames it to `obs` there before it has set up
    # the new program's arguments and environment (empty /proc/PID/cmdline and environ meanwhile; a busy machine
    # makes that window long). Wait until exec has finished, as it has for any OBS a user runs.
    started = Path(f"/proc/{proc.pid}")
    deadline = time.monotonic() + 10
    while not ((started / "comm").read_text().strip() == "obs" and (started / "cmdline").read_bytes()):
        assert time.monotonic() < deadline, "the stand-in OBS process did not start"
        time.sleep(0.02)
    return proc
