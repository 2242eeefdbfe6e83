"""Which GPU this PC has, and which of obs-rvm's GPU packages suit it: the installer's default and the doctor's advice.

The facts come from what any Linux PC has, before anything of obs-rvm is installed: nvidia-smi (model, driver, the
CUDA version the driver supports, compute capability), /sys/class/drm (every GPU the kernel drives: its PCI vendor
and device ids and its kernel driver), the Vulkan loader and driver manifests (WebGPU runs on Vulkan), and
`vulkaninfo --summary` where vulkan-tools is installed. `gather()` reads them; `decide()` is a pure function of them,
so tests describe PCs this one is not. Standard library only: the installer runs this with a bare system Python.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from .cuda import GpuPackages, for_gpu
from .system import NvidiaGpu, nvidia_gpu

NVIDIA, AMD, INTEL = "NVIDIA", "AMD", "Intel"
VENDORS = {0x10DE: NVIDIA, 0x1002: AMD, 0x8086: INTEL}
"""PCI vendor ids of the GPU makers obs-rvm has a package for (others, e.g. a VM's virtual GPU, are ignored)."""
TENSORRT_RTX_CAPABILITIES = ((8, 6), (8, 9))
"""As obs_rvm.engines.gpu.TENSORRT_RTX_CAPABILITIES (not imported: that package needs numpy): its provider takes these
and 12.0 and newer (RTX 30, 40, 50), and refuses Turing, A100 and H100."""
PLUGIN_PYTHON = (3, 11)
"""ONNX Runtime loads the plugin providers from 1.24 on, which has wheels for Python 3.11 and newer only (and
onnxruntime-ep-webgpu requires 3.11): an OBS that embeds Python 3.10 (Ubuntu 22.04) cannot have them."""
TENSORRT_RTX_CUDA = (12, 9)
"""The driver's CUDA version the TensorRT-RTX wheel needs (it bundles CUDA 12.9's runtime): NVIDIA driver 575+."""
VULKAN_PACKAGES = "sudo apt-get install libvulkan1 mesa-vulkan-drivers"
"""Debian/Ubuntu: the Vulkan loader and Mesa's Vulkan drivers (AMD radv, Intel anv), which WebGPU runs on."""
INTEL_OPENCL = "sudo apt-get install intel-opencl-icd"
"""OpenVINO reaches Intel GPUs through Intel's OpenCL driver (without it, it offers only the CPU)."""
NVIDIA_DRIVER = "install the NVIDIA driver (Debian: sudo apt-get install nvidia-driver; Ubuntu: sudo ubuntu-drivers " \
                "install), reboot"
ICD_PREFIXES = {NVIDIA: ("nvidia",), AMD: ("radeon", "amd"), INTEL: ("intel",)}
"""Vulkan driver manifests by vendor: nvidia_icd.json, radeon_icd.x86_64.json (Mesa radv), amd_icd64.json (AMDVLK),
intel_icd.x86_64.json / intel_hasvk_icd.x86_64.json (Mesa anv)."""

TITLES = {"tensorrt-rtx": "TensorRT-RTX", "webgpu": "WebGPU", "openvino": "OpenVINO"}
WHEELS = {"tensorrt-rtx": "onnxruntime-ep-nv-tensorrt-rtx-cu12", "webgpu": "onnxruntime-ep-webgpu",
          "openvino": "onnxruntime-ep-openvino"}
"""The plugin providers' wheels, by pyproject extra (as obs_rvm.engines.plugin_eps.PLUGINS)."""

DRM = Path("/sys/class/drm")
ICD_DIRS = (Path("/etc/vulkan/icd.d"), Path("/usr/share/vulkan/icd.d"), Path("/usr/local/share/vulkan/icd.d"))
OPENCL_DIRS = (Path("/etc/OpenCL/vendors"),)
LOADER_DIRS = (Path("/usr/lib/x86_64-linux-gnu"), Path("/lib/x86_64-linux-gnu"), Path("/usr/lib64"), Path("/usr/lib"),
               Path("/usr/lib/aarch64-linux-gnu"), Path("/usr/local/lib"))
PCI_IDS = (Path("/usr/share/misc/pci.ids"), Path("/usr/share/hwdata/pci.ids"))


@dataclass(frozen=True)
class DrmCard:
    """A GPU the kernel drives (/sys/class/drm/cardN/device)."""

    vendor: int
    device: int
    driver: str = ""
    """The kernel driver: nvidia, nouveau, amdgpu, radeon, i915, xe; "" when none is bound."""
    name: str = ""
    """The model from pci.ids, when the system has that file."""

    @property
    def maker(self) -> str:
        return VENDORS.get(self.vendor, "")

    def describe(self) -> str:
        model = self.name or f"{self.maker or 'unknown'} GPU [{self.vendor:04x}:{self.device:04x}]"
        return f"{model} ({self.driver} kernel driver)" if self.driver else f"{model} (no kernel driver bound)"


@dataclass(frozen=True)
class VulkanDevice:
    """A device Vulkan offers (vulkaninfo --summary)."""

    name: str
    type: str
    """PHYSICAL_DEVICE_TYPE_DISCRETE_GPU, _INTEGRATED_GPU, _VIRTUAL_GPU, _CPU (a software driver such as lavapipe)."""
    vendor: int = 0
    driver: str = ""
    """driverName and driverInfo: "radv Mesa 24.2.8", "NVIDIA 550.120"."""

    @property
    def gpu(self) -> bool:
        return self.type != "PHYSICAL_DEVICE_TYPE_CPU"


@dataclass(frozen=True)
class Facts:
    """Everything decide() reads."""

    nvidia: NvidiaGpu | None = None
    """What nvidia-smi said; None when it is not installed."""
    cards: tuple[DrmCard, ...] = ()
    vulkan_loader: bool = False
    """libvulkan.so.1 is installed."""
    icds: tuple[str, ...] = ()
    """The Vulkan driver manifests installed (file names)."""
    vulkan: tuple[VulkanDevice, ...] | None = None
    """What vulkaninfo lists; None when vulkaninfo is not installed (nothing known), () when it finds no device."""
    opencl: tuple[str, ...] = ()
    """The OpenCL drivers registered (/etc/OpenCL/vendors/*.icd file names)."""
    python: str = ""
    """The Python the environment runs on ("3.11"; OBS's for the installer); "" when not known."""


@dataclass(frozen=True)
class Gap:
    """Something missing for the GPU to be used (or used better), and the one command or step that fixes it."""

    topic: str
    """What it is about, for the doctor's line: "Driver", "Vulkan", "OpenCL"."""
    problem: str
    fix: str

    def __str__(self) -> str:
        return f"{self.problem}: {self.fix}"


@dataclass(frozen=True)
class Choice:
    """What the installer puts in the environment for this PC, and what is missing for it to run on the GPU."""

    vendor: str
    """The maker of the GPU the choice is for: NVIDIA, AMD, Intel, or "" (no GPU obs-rvm can use: the CPU)."""
    gpu: str
    """The GPU and its driver, in one line."""
    why: str
    """Why these packages (or why none), in words a user can act on."""
    tensorrt: GpuPackages | None = None
    """The full TensorRT + pycuda path (Turing and data-centre GPUs, RTX cards whose driver is too old for
    TensorRT-RTX)."""
    extras: tuple[str, ...] = ()
    """pyproject extras with ONNX Runtime's plugin providers: tensorrt-rtx, webgpu, openvino."""
    gaps: tuple[Gap, ...] = field(default_factory=tuple)
    """What the user can install or update so the GPU is used (or used better)."""

    @property
    def extra(self) -> str:
        """What the environment is installed with: pyproject's extras, or "cpu"."""
        if self.tensorrt is not None:
            return self.tensorrt.extra
        return ",".join(self.extras) or "cpu"

    def title(self) -> str:
        """The GPU package's name for messages: "TensorRT", "TensorRT-RTX", "OpenVINO, WebGPU", or "" for none."""
        if self.tensorrt is not None:
            return "TensorRT"
        return ", ".join(TITLES[e] for e in self.extras)

    def packages(self) -> str:
        """The wheels, for the installer's messages."""
        if self.tensorrt is not None:
            return f"TensorRT for CUDA {self.tensorrt.major}, pycuda"
        return ", ".join(WHEELS[e] for e in self.extras)


# -- the decision ----------------------------------------------------------------------------------------------------


def tensorrt_rtx_capable(capability: tuple[int, int] | None) -> bool:
    return capability is not None and (capability in TENSORRT_RTX_CAPABILITIES or capability >= (12, 0))


def _version(text: str) -> tuple[int, int] | None:
    found = re.match(r"\s*(\d+)\.(\d+)", text)
    return (int(found.group(1)), int(found.group(2))) if found else None


def decide(facts: Facts) -> Choice:
    """The packages for this PC: for an NVIDIA GPU nvidia-smi can talk to, TensorRT-RTX on the RTX cards its provider
    takes (with a driver for CUDA 12.9+), else the full TensorRT + pycuda path (Turing, A100, H100, older drivers),
    else WebGPU; for AMD and Intel GPUs, WebGPU over Vulkan, and OpenVINO too where Intel's GPU is the only one.
    Each gap (no Vulkan driver, no NVIDIA driver, a driver too old for the better package) comes with its fix."""
    nvidia = facts.nvidia
    if nvidia is not None and nvidia.usable:
        return _nvidia(facts, nvidia)
    gaps: list[Gap] = []
    listed = [c for c in facts.cards if c.maker == NVIDIA]
    if nvidia is not None:  # nvidia-smi is installed but cannot talk to the driver
        gaps.append(Gap("Driver", f"nvidia-smi fails: {nvidia.error}", "reinstall or update the NVIDIA driver (e.g. "
                                  "sudo apt-get install nvidia-driver), reboot, and run the installer again"))
    elif listed:
        gaps.append(Gap("Driver", f"the NVIDIA GPU runs on {listed[0].driver or 'no driver'}, not NVIDIA's driver "
                                  f"(which TensorRT needs)", f"{NVIDIA_DRIVER}, and run the installer again"))
    makers = _makers(facts)
    others = [m for m in (AMD, INTEL) if m in makers]
    if not others:
        if nvidia is not None:
            return Choice("", "NVIDIA driver", f"nvidia-smi fails: {nvidia.error}", gaps=tuple(gaps))
        if listed:
            return Choice("", listed[0].describe(), "no NVIDIA driver (nvidia-smi not found)", gaps=tuple(gaps))
        return Choice("", "no GPU found", "no NVIDIA driver (nvidia-smi not found), and no AMD or Intel GPU")
    vendor = others[0]
    if _old_python(facts):
        return Choice(vendor, _describe_other(facts, vendor), _old_python(facts),
                      gaps=tuple(gaps))
    extras = ("openvino", "webgpu") if others == [INTEL] else ("webgpu",)
    gaps += _vulkan_gaps(facts, vendor)
    if "openvino" in extras and not any("intel" in name.lower() for name in facts.opencl):
        gaps.append(Gap("OpenCL", "OpenVINO reaches Intel GPUs through Intel's OpenCL driver, which is not installed",
                        INTEL_OPENCL))
    why = "OpenVINO (Intel's own) and WebGPU over Vulkan" if "openvino" in extras else "WebGPU over Vulkan"
    return Choice(vendor, _describe_other(facts, vendor), why, extras=extras, gaps=tuple(gaps))


def _nvidia(facts: Facts, gpu: NvidiaGpu) -> Choice:
    cc = gpu.compute_capability
    found = f"{', '.join(gpu.names)}{f' (compute capability {cc[0]}.{cc[1]})' if cc else ''}, driver {gpu.driver}, " \
            f"CUDA {gpu.cuda or '?'}"
    gaps: list[Gap] = []
    cuda = _version(gpu.cuda)
    if tensorrt_rtx_capable(cc) and not _old_python(facts):
        if cuda is not None and cuda >= TENSORRT_RTX_CUDA:
            return Choice(NVIDIA, found, "TensorRT-RTX, for RTX 30 and later", extras=("tensorrt-rtx",))
        gaps.append(Gap("Driver", f"TensorRT-RTX (a smaller install that builds its engines in seconds) needs a "
                                  f"driver for CUDA {TENSORRT_RTX_CUDA[0]}.{TENSORRT_RTX_CUDA[1]} or newer",
                        "update the NVIDIA driver to 575 or later, then run the installer again"))
    packages, why = for_gpu(gpu)
    if packages is not None:
        reason = ("TensorRT-RTX runs on RTX 30 and later only" if not tensorrt_rtx_capable(cc) else
                  _old_python(facts) or "the driver is too old for TensorRT-RTX")
        return Choice(NVIDIA, found, reason, tensorrt=packages, gaps=tuple(gaps))
    # Too old a GPU or driver for TensorRT: Vulkan (which NVIDIA's driver has) still gives WebGPU.
    if _old_python(facts):
        return Choice(NVIDIA, found, f"{why}; {_old_python(facts)}")
    return Choice(NVIDIA, found, f"{why}: WebGPU over Vulkan instead", extras=("webgpu",),
                  gaps=tuple(gaps + _vulkan_gaps(facts, NVIDIA)))


def _old_python(facts: Facts) -> str:
    """Why the plugin providers cannot be installed for this Python, or ""."""
    version = _version(facts.python)
    if version is None or version >= PLUGIN_PYTHON:
        return ""
    return (f"OBS's Python {facts.python} is too old for ONNX Runtime's GPU providers (they need Python "
            f"{PLUGIN_PYTHON[0]}.{PLUGIN_PYTHON[1]} or newer)")


def _makers(facts: Facts) -> list[str]:
    """The GPU makers found, by kernel or by Vulkan (a container may show Vulkan's devices but no /sys/class/drm)."""
    found = [c.maker for c in facts.cards if c.maker]
    found += [VENDORS[d.vendor] for d in facts.vulkan or () if d.gpu and d.vendor in VENDORS]
    return list(dict.fromkeys(found))


def _vulkan_gaps(facts: Facts, vendor: str) -> list[Gap]:
    """What WebGPU lacks on this GPU: the loader, or a Vulkan driver for it."""
    hint = "sudo apt-get install libvulkan1 (NVIDIA's driver has its own Vulkan driver)" if vendor == NVIDIA else \
        VULKAN_PACKAGES
    if not facts.vulkan_loader:
        return [Gap("Vulkan", "WebGPU needs the Vulkan loader (libvulkan.so.1), which is not installed", hint)]
    if facts.vulkan is not None:
        if any(d.gpu and VENDORS.get(d.vendor, vendor) == vendor for d in facts.vulkan):
            return []
        return [Gap("Vulkan", f"Vulkan offers no {vendor} GPU here (vulkaninfo), so WebGPU cannot use it", hint)]
    if not any(name.lower().startswith(ICD_PREFIXES[vendor]) for name in facts.icds):
        return [Gap("Vulkan", f"no Vulkan driver for the {vendor} GPU is installed, so WebGPU cannot use it", hint)]
    return []


def _describe_other(facts: Facts, vendor: str) -> str:
    cards = [c.describe() for c in facts.cards if c.maker == vendor]
    vulkan = [d for d in facts.vulkan or () if d.gpu and VENDORS.get(d.vendor) == vendor]
    parts = cards or [d.name for d in vulkan] or [f"{vendor} GPU"]
    if vulkan:
        parts.append(f"Vulkan: {vulkan[0].name}, {vulkan[0].driver}" if cards else f"Vulkan: {vulkan[0].driver}")
    return "; ".join(parts)


# -- reading the facts -----------------------------------------------------------------------------------------------


def read_cards(drm: Path = DRM, pci_ids: str = "") -> tuple[DrmCard, ...]:
    """The GPUs under /sys/class/drm (cardN, not its connectors), each once (a GPU can have several card nodes)."""
    found: dict[tuple[str, int, int], DrmCard] = {}
    try:
        nodes = sorted(p for p in drm.iterdir() if re.fullmatch(r"card\d+", p.name))
    except OSError:
        return ()
    for node in nodes:
        device = node / "device"
        try:
            vendor = int((device / "vendor").read_text().strip(), 16)
            model = int((device / "device").read_text().strip(), 16)
        except (OSError, ValueError):
            continue  # no PCI device behind it (simpledrm, a virtual display)
        driver = os.path.basename(os.readlink(device / "driver")) if (device / "driver").is_symlink() else ""
        where = os.path.realpath(device)
        found.setdefault((where, vendor, model), DrmCard(vendor, model, driver, pci_name(pci_ids, vendor, model)))
    return tuple(found.values())


def pci_name(pci_ids: str, vendor: int, device: int) -> str:
    """The model's name from pci.ids text ("Navi 23 [Radeon RX 6600/6600 XT/6600M]"), prefixed with the maker."""
    if not pci_ids:
        return ""
    start = re.search(rf"^{vendor:04x}  .*$", pci_ids, re.MULTILINE)
    if not start:
        return ""
    section = pci_ids[start.end():]
    end = re.search(r"^[0-9a-f]{4}  ", section, re.MULTILINE)
    found = re.search(rf"^\t{device:04x}  (.+)$", section[:end.start()] if end else section, re.MULTILINE)
    return f"{VENDORS.get(vendor, 'GPU')} {found.group(1).strip()}" if found else ""


def parse_vulkaninfo(text: str) -> tuple[VulkanDevice, ...]:
    """The devices of `vulkaninfo --summary` (its "Devices:" section: GPU0:, GPU1:, ... each with key = value)."""
    devices = []
    for block in re.split(r"^GPU\d+:\s*$", text.split("Devices:", 1)[-1], flags=re.MULTILINE)[1:]:
        values = dict(re.findall(r"^\s*(\w+)\s*=\s*(.*?)\s*$", block, re.MULTILINE))
        if "deviceName" not in values:
            continue
        try:
            vendor = int(values.get("vendorID", "0"), 16)
        except ValueError:
            vendor = 0
        driver = " ".join(v for v in (values.get("driverName", ""), values.get("driverInfo", "")) if v)
        devices.append(VulkanDevice(values["deviceName"], values.get("deviceType", ""), vendor, driver))
    return tuple(devices)


def _names(folders: tuple[Path, ...], pattern: str) -> tuple[str, ...]:
    return tuple(name for folder in folders if folder.is_dir() for name in sorted(p.name for p in folder.glob(pattern)))


def _vulkaninfo() -> tuple[VulkanDevice, ...] | None:
    tool = shutil.which("vulkaninfo")
    if not tool:
        return None
    try:
        out = subprocess.run([tool, "--summary"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return parse_vulkaninfo(out.stdout) if out.returncode == 0 else ()


def gather(python: str = "") -> Facts:
    """This PC's facts (a few milliseconds, plus nvidia-smi and vulkaninfo where installed), for an environment on
    Python `python` ("3.11")."""
    pci_ids = ""
    for path in PCI_IDS:
        try:
            pci_ids = path.read_text(errors="replace")
            break
        except OSError:
            continue
    loader = any((folder / "libvulkan.so.1").exists() for folder in LOADER_DIRS)
    return Facts(nvidia=nvidia_gpu(), cards=read_cards(DRM, pci_ids), vulkan_loader=loader,
                 icds=_names(ICD_DIRS, "*.json"), vulkan=_vulkaninfo(), opencl=_names(OPENCL_DIRS, "*.icd"),
                 python=python)


def main(argv: list[str] | None = None) -> int:
    """`python -m obs_rvm.install.hardware`: what the installer finds here and would install (nothing is changed)."""
    argparse.ArgumentParser(prog="python -m obs_rvm.install.hardware", description=main.__doc__).parse_args(argv)
    facts = gather()
    choice = decide(facts)
    for card in facts.cards:
        print(f"  {'PCI':<12} {card.describe()}")
    for device in facts.vulkan or ():
        print(f"  {'Vulkan':<12} {device.name} ({device.type.removeprefix('PHYSICAL_DEVICE_TYPE_')}, {device.driver})")
    print(f"  {'GPU':<12} {choice.gpu}")
    print(f"  {'Install':<12} {choice.extra} ({choice.packages() or 'onnxruntime'}): {choice.why}")
    for gap in choice.gaps:
        print(f"  {'Fix':<12} {gap}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
