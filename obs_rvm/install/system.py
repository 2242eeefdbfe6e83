"""The parts of the system obs-rvm relies on but cannot install itself: the NVIDIA driver and the v4l2loopback
kernel module behind OBS's virtual camera."""

from __future__ import annotations

import platform
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

MODPROBE = 'sudo modprobe v4l2loopback video_nr=10 card_label="OBS Virtual Camera" exclusive_caps=1'
"""The command in docs/install.md. exclusive_caps=1: Chrome/WebRTC (Meet, Zoom in the browser) only list a loopback
device that advertises capture alone. The label is the one OBS itself uses when it loads the module; /dev/video10 is
where `obs-rvm camera` writes by default, so one device serves both."""
INSTALL_V4L2LOOPBACK = "sudo apt-get install v4l2loopback-dkms linux-headers-$(uname -r)"
SYS_MODULE = Path("/sys/module/v4l2loopback")


@dataclass(frozen=True)
class NvidiaGpu:
    names: list[str] = field(default_factory=list)
    driver: str = ""
    cuda: str = ""
    """The newest CUDA version the driver supports (nvidia-smi's header)."""
    error: str = ""
    """Why nvidia-smi failed, when it is installed but cannot talk to the driver."""
    compute_capability: tuple[int, int] | None = None
    """The first GPU's, when this nvidia-smi can say (510 and later)."""

    @property
    def usable(self) -> bool:
        return bool(self.names) and not self.error


def nvidia_gpu() -> NvidiaGpu | None:
    """What nvidia-smi reports, or None when there is no NVIDIA driver (no nvidia-smi) at all."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return None
    try:
        query = subprocess.run([smi, "--query-gpu=name,driver_version", "--format=csv,noheader"],
                               capture_output=True, text=True, timeout=30)
        header = subprocess.run([smi], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return NvidiaGpu(error=f"nvidia-smi did not answer: {e}")
    if query.returncode != 0:
        message = (query.stdout + query.stderr).strip().splitlines()
        return NvidiaGpu(error=message[0] if message else f"nvidia-smi failed (exit code {query.returncode})")
    rows = [[part.strip() for part in line.split(",")] for line in query.stdout.strip().splitlines() if line.strip()]
    cuda = re.search(r"CUDA Version:\s*([\d.]+)", header)
    return NvidiaGpu(names=[r[0] for r in rows], driver=rows[0][1] if rows and len(rows[0]) > 1 else "",
                     cuda=cuda.group(1) if cuda else "", error="" if rows else "nvidia-smi lists no GPU",
                     compute_capability=_compute_capability(smi))


def _compute_capability(smi: str) -> tuple[int, int] | None:
    try:
        out = subprocess.run([smi, "--query-gpu=compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    found = re.match(r"\s*(\d+)\.(\d+)", out.stdout) if out.returncode == 0 else None
    return (int(found.group(1)), int(found.group(2))) if found else None


@dataclass(frozen=True)
class Loopback:
    loaded: bool
    available: bool
    """The module is installed for the running kernel (it can be loaded)."""
    devices: list[str] = field(default_factory=list)
    """'/dev/video10 (OBS Virtual Camera)' for each loopback device."""
    exclusive_caps: str = ""

    def state(self) -> str:
        if not self.loaded:
            return "v4l2loopback installed but not loaded" if self.available else "v4l2loopback not installed"
        caps = "" if "Y" in self.exclusive_caps or "1" in self.exclusive_caps else \
            " (without exclusive_caps=1: browsers may not list it)"
        return f"v4l2loopback loaded: {', '.join(self.devices) or 'no devices'}{caps}"

    def fix(self) -> str:
        """The exact command(s) that make OBS's virtual camera usable, or "" when it is."""
        if self.loaded:
            caps_ok = "Y" in self.exclusive_caps or "1" in self.exclusive_caps
            return "" if caps_ok else f"sudo modprobe -r v4l2loopback && {MODPROBE}"
        return MODPROBE if self.available else f"{INSTALL_V4L2LOOPBACK}, then {MODPROBE}"

    def advice(self) -> str:
        return f"{self.state()}: {self.fix()}" if self.fix() else self.state()


def loopback() -> Loopback:
    if SYS_MODULE.is_dir():
        try:
            caps = (SYS_MODULE / "parameters" / "exclusive_caps").read_text().strip()
        except OSError:
            caps = ""
        return Loopback(loaded=True, available=True, devices=_loopback_devices(), exclusive_caps=caps)
    return Loopback(loaded=False, available=_module_installed())


def _loopback_devices() -> list[str]:
    devices = []
    for node in sorted(Path("/sys/devices/virtual/video4linux").glob("video*")):
        try:
            label = (node / "name").read_text().strip()
        except OSError:
            label = "?"
        devices.append(f"/dev/{node.name} ({label})")
    return devices


def _module_installed() -> bool:
    modinfo = shutil.which("modinfo") or next((p for p in ("/sbin/modinfo", "/usr/sbin/modinfo") if Path(p).exists()),
                                              None)
    if modinfo:
        try:
            if subprocess.run([modinfo, "v4l2loopback"], capture_output=True, timeout=20).returncode == 0:
                return True
        except (OSError, subprocess.TimeoutExpired):
            pass
    modules = Path("/lib/modules") / platform.release()
    return modules.is_dir() and any(modules.rglob("v4l2loopback.ko*"))
