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


def path_without(program: str, folder: Path) -> str:
    """This PATH with `program` hidden: each folder that has it stands in as a folder of links to everything else
    in it (made under `folder`), so every other program is still found where it was."""
    entries = []
    for i, entry in enumerate(os.environ.get("PATH", "").split(os.pathsep)):
        original = Path(entry or ".")
        if not (original / program).exists():
            entries.append(entry)
            continue
        shadow = folder / str(i)
        shadow.mkdir(parents=True)
        for path in original.iterdir():
            if path.name != program:
                (shadow / path.name).symlink_to(path)
        entries.append(str(shadow))
    hidden = os.pathsep.join(entries)
    assert shutil.which(program, path=hidden) is None
    return hidden


SMI_HEADER = """\
+-----------------------------------------------------------------------------------------+
| NVIDIA-SMI {driver}             Driver Version: {driver}     CUDA Version: {cuda}     |
+-----------------------------------------+------------------------+----------------------+
"""


def fake_nvidia_smi(folder: Path, name: str, driver: str, cuda_version: str, capability: str | None) -> Path:
    """An nvidia-smi answering the installer's three questions as that driver's would (no compute_cap field on
    drivers before 510: the query fails). Shell builtins only, so it works with nothing else on the PATH."""
    folder.mkdir(parents=True, exist_ok=True)
    unknown = 'echo "Field \\"compute_cap\\" is not a valid field to query."; exit 2'
    cap = f'echo "{capability}"' if capability else unknown
    script = folder / "nvidia-smi"
    script.write_text(f"""#!/bin/sh
case "$1" in
  --query-gpu=name,driver_version) echo "{name}, {driver}" ;;
  --query-gpu=compute_cap) {cap} ;;
  "") printf '%s' '{SMI_HEADER.format(driver=driver, cuda=cuda_version)}' ;;
  *) echo "unknown option $1"; exit 2 ;;
esac
""")
    script.chmod(0o755)
    return folder


def fake_vulkaninfo(folder: Path, summary: str | None) -> Path:
    """A vulkaninfo whose --summary prints `summary` (its real layout, from the test), or fails as vulkaninfo does
    where the loader finds no Vulkan driver (summary None)."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "vulkaninfo"
    assert summary is None or "'" not in summary
    body = (f"printf '%s' '{summary}'" if summary is not None else
            'echo "ERROR: [Loader Message] Code 0 : vkCreateInstance: Found no drivers!" >&2; exit 1')
    script.write_text(f'#!/bin/sh\n[ "$1" = --summary ] || exit 2\n{body}\n')
    script.chmod(0o755)
    return folder


def fake_drm(root: Path, gpus: tuple[tuple[int, int, str], ...]) -> Path:
    """/sys/class/drm under root as the kernel lays it out, for GPUs given as (PCI vendor, device, kernel driver):
    cardN -> the PCI device (vendor, device, driver -> its driver), connectors (card1-DP-1) and render nodes beside
    them, and a simpledrm card0 with no PCI device."""
    drm = root / "class" / "drm"
    drm.mkdir(parents=True)
    for i, (vendor, device, driver) in enumerate(gpus):
        pci = root / "devices" / f"0000:0{i + 1}:00.0"
        pci.mkdir(parents=True)
        (pci / "vendor").write_text(f"0x{vendor:04x}\n")
        (pci / "device").write_text(f"0x{device:04x}\n")
        (root / "bus" / "pci" / "drivers" / driver).mkdir(parents=True, exist_ok=True)
        (pci / "driver").symlink_to(root / "bus" / "pci" / "drivers" / driver)
        (drm / f"card{i + 1}").mkdir()
        (drm / f"card{i + 1}" / "device").symlink_to(pci)
        (drm / f"card{i + 1}-DP-{i + 1}").mkdir()
        (drm / f"renderD{128 + i}").mkdir()
    (root / "devices" / "simple-framebuffer.0").mkdir(parents=True)
    (drm / "card0").mkdir()
    (drm / "card0" / "device").symlink_to(root / "devices" / "simple-framebuffer.0")
    return drm
