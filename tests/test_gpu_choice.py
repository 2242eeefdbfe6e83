"""Which GPU package the installer picks (obs_rvm/install/hardware.py), and what the doctor says of it, on PCs this one
is not.

The real `gather()` and `decide()` run; what they read is faked the way the PC would show it: a /sys/class/drm tree
in tmp_path (card nodes linking to PCI devices with vendor and device ids and a kernel driver), nvidia-smi and
vulkaninfo as programs on the PATH printing what the real ones print, the Vulkan loader, driver manifests and OpenCL
drivers as files in folders of their own, and pci.ids text for the model names. For the doctor's last line, backend
planning is asked through a Probe that describes what that PC's providers would find.
"""

from __future__ import annotations

import importlib.util
import itertools
from pathlib import Path

import pytest

from obs_rvm import doctor
from obs_rvm.engines import Probe
from obs_rvm.engines.gpu import TENSORRT_RTX_CAPABILITIES, GpuInfo
from obs_rvm.engines.plugin_eps import PLUGINS, EpDevice
from obs_rvm.install import hardware
from obs_rvm.install.hardware import INTEL_OPENCL, VULKAN_PACKAGES, Facts, Gap

from install_helpers import fake_drm, fake_nvidia_smi, fake_vulkaninfo

PCI_IDS = """\
# List of PCI ID's (an excerpt)
1002  Advanced Micro Devices, Inc. [AMD/ATI]
\t73ff  Navi 23 [Radeon RX 6600/6600 XT/6600M]
\t\t1002 0e2e  Radeon RX 6600
10de  NVIDIA Corporation
\t1f08  TU106 [GeForce RTX 2060 Rev. A]
\t2504  GA106 [GeForce RTX 3060 Lite Hash Rate]
1af4  Red Hat, Inc.
\t1050  Virtio 1.0 GPU
8086  Intel Corporation
\t46a6  Alder Lake-P GT2 [Iris Xe Graphics]
"""

VULKAN_HEADER = """\
==========
VULKANINFO
==========

Vulkan Instance Version: 1.3.280


Instance Extensions: count = 24
-------------------------------
VK_EXT_debug_report                    : extension revision 10
VK_KHR_surface                         : extension revision 25

Instance Layers: count = 0
--------------------------

Devices:
========
"""
RADV = """\
GPU0:
\tapiVersion         = 1.3.289
\tdriverVersion      = 24.2.8
\tvendorID           = 0x1002
\tdeviceID           = 0x73ff
\tdeviceType         = PHYSICAL_DEVICE_TYPE_DISCRETE_GPU
\tdeviceName         = AMD Radeon RX 6600 (RADV NAVI23)
\tdriverID           = DRIVER_ID_MESA_RADV
\tdriverName         = radv
\tdriverInfo         = Mesa 24.2.8
\tconformanceVersion = 1.3.0.0
"""
LLVMPIPE = """\
GPU{n}:
\tapiVersion         = 1.3.289
\tdriverVersion      = 0.0.1
\tvendorID           = 0x10005
\tdeviceID           = 0x0000
\tdeviceType         = PHYSICAL_DEVICE_TYPE_CPU
\tdeviceName         = llvmpipe (LLVM 19.1.1, 256 bits)
\tdriverID           = DRIVER_ID_MESA_LLVMPIPE
\tdriverName         = llvmpipe
\tdriverInfo         = Mesa 24.2.8 (LLVM 19.1.1)
\tconformanceVersion = 1.3.1.1
"""
NO_VULKANINFO = object()

AMD_RX6600 = (0x1002, 0x73FF, "amdgpu")
INTEL_IRIS = (0x8086, 0x46A6, "i915")
RTX_2060 = (0x10DE, 0x1F08, "nvidia")
VIRTIO = (0x1AF4, 0x1050, "virtio-pci")


@pytest.fixture
def pc(tmp_path, monkeypatch):
    """Describe a PC, then read it with the real gather(): `pc(smi=..., gpus=..., vulkaninfo=..., ...)` (each call a
    PC of its own)."""
    count = itertools.count()

    def make(*, smi: tuple | str | None = None, gpus: tuple = (), vulkaninfo: object = NO_VULKANINFO,
             loader: bool = True, icds: tuple[str, ...] = (), opencl: tuple[str, ...] = (), python: str = "") -> Facts:
        root = tmp_path / f"pc{next(count)}"
        bin_dir = root / "bin"
        bin_dir.mkdir(parents=True)
        if isinstance(smi, tuple):
            fake_nvidia_smi(bin_dir, *smi)
        elif isinstance(smi, str):  # installed, but the driver does not answer
            (bin_dir / "nvidia-smi").write_text(f'#!/bin/sh\necho "{smi}"\nexit 9\n')
            (bin_dir / "nvidia-smi").chmod(0o755)
        if vulkaninfo is not NO_VULKANINFO:
            fake_vulkaninfo(bin_dir, vulkaninfo)  # type: ignore[arg-type]
        monkeypatch.setenv("PATH", str(bin_dir))  # the fakes use shell builtins only: nothing else is found
        monkeypatch.setattr(hardware, "DRM", fake_drm(root / "sys", gpus))
        folders = {}
        for name, files in (("lib", ("libvulkan.so.1",) if loader else ()), ("icd.d", icds), ("vendors", opencl)):
            folders[name] = root / name
            folders[name].mkdir()
            for file in files:
                (folders[name] / file).write_text("{}")
        monkeypatch.setattr(hardware, "LOADER_DIRS", (folders["lib"],))
        monkeypatch.setattr(hardware, "ICD_DIRS", (folders["icd.d"],))
        monkeypatch.setattr(hardware, "OPENCL_DIRS", (folders["vendors"],))
        (root / "pci.ids").write_text(PCI_IDS)
        monkeypatch.setattr(hardware, "PCI_IDS", (root / "missing.ids", root / "pci.ids"))
        return hardware.gather(python)
    return make


# -- NVIDIA: nvidia-smi decides ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("smi", "extra", "why"), [
    (("NVIDIA GeForce RTX 2060", "550.120", "12.4", "7.5"), "gpu-cu12", "TensorRT-RTX runs on RTX 30 and later only"),
    (("NVIDIA GeForce RTX 3060", "575.64.03", "12.9", "8.6"), "tensorrt-rtx", "TensorRT-RTX, for RTX 30 and later"),
    (("NVIDIA GeForce RTX 4070", "580.65.06", "13.0", "8.9"), "tensorrt-rtx", "TensorRT-RTX, for RTX 30 and later"),
    (("NVIDIA GeForce RTX 5080", "580.65.06", "13.0", "12.0"), "tensorrt-rtx", "TensorRT-RTX, for RTX 30 and later"),
    (("NVIDIA A100-SXM4-40GB", "570.86.15", "12.8", "8.0"), "gpu-cu12", "TensorRT-RTX runs on RTX 30 and later only"),
    (("NVIDIA H100 80GB HBM3", "580.159.04", "13.0", "9.0"), "gpu-cu13", "TensorRT-RTX runs on RTX 30 and later only"),
    (("Tesla T4", "535.183.01", "12.2", "7.5"), "gpu-cu12", "TensorRT-RTX runs on RTX 30 and later only"),
])
def test_nvidia_gpus_get_tensorrt_rtx_or_the_full_tensorrt(pc, smi, extra, why):
    choice = hardware.decide(pc(smi=smi, gpus=(RTX_2060,)))
    name, driver, cuda, capability = smi
    assert choice.vendor == "NVIDIA" and choice.extra == extra and choice.why == why and choice.gaps == ()
    assert choice.gpu == f"{name} (compute capability {capability}), driver {driver}, CUDA {cuda}"
    if extra == "tensorrt-rtx":
        assert choice.tensorrt is None and choice.extras == ("tensorrt-rtx",)
        assert choice.packages() == "onnxruntime-ep-nv-tensorrt-rtx-cu12" and choice.title() == "TensorRT-RTX"
    else:
        assert choice.tensorrt is not None and choice.tensorrt.cuda == tuple(int(p) for p in cuda.split("."))
        assert choice.extras == () and choice.title() == "TensorRT"
        assert choice.packages() == f"TensorRT for CUDA {cuda.split('.')[0]}, pycuda"


def test_rtx_card_with_a_driver_too_old_for_tensorrt_rtx_keeps_tensorrt_and_says_why(pc):
    choice = hardware.decide(pc(smi=("NVIDIA GeForce RTX 3060", "550.120", "12.4", "8.6")))
    assert choice.extra == "gpu-cu12" and choice.why == "the driver is too old for TensorRT-RTX"
    (gap,) = choice.gaps
    assert gap.topic == "Driver" and gap.problem.endswith("needs a driver for CUDA 12.9 or newer")
    assert gap.fix == "update the NVIDIA driver to 575 or later, then run the installer again"


@pytest.mark.parametrize(("smi", "why"), [
    (("NVIDIA GeForce GTX 1060 6GB", "550.120", "12.4", "6.1"), "(compute capability 6.1) is too old for TensorRT"),
    (("NVIDIA GeForce GTX 1080", "470.256.02", "11.4", None), "the NVIDIA driver (CUDA 11.4) is too old for TensorRT"),
])
def test_nvidia_gpus_tensorrt_cannot_serve_get_webgpu(pc, smi, why):
    choice = hardware.decide(pc(smi=smi, icds=("nvidia_icd.json",)))
    assert choice.extras == ("webgpu",) and choice.tensorrt is None and choice.vendor == "NVIDIA"
    assert why in choice.why and choice.why.endswith(": WebGPU over Vulkan instead") and choice.gaps == ()
    without_loader = hardware.decide(pc(smi=smi, loader=False))
    assert without_loader.gaps == (Gap("Vulkan", "WebGPU needs the Vulkan loader (libvulkan.so.1), which is not "
                                           "installed", "sudo apt-get install libvulkan1 (NVIDIA's driver has its own "
                                           "Vulkan driver)"),)


def test_nvidia_card_without_nvidias_driver_is_cpu_with_the_driver_fix(pc):
    choice = hardware.decide(pc(gpus=((0x10DE, 0x2504, "nouveau"),)))
    assert choice.extra == "cpu" and choice.vendor == ""
    assert choice.gpu == "NVIDIA GA106 [GeForce RTX 3060 Lite Hash Rate] (nouveau kernel driver)"
    assert choice.why == "no NVIDIA driver (nvidia-smi not found)"
    (gap,) = choice.gaps
    assert gap.problem == "the NVIDIA GPU runs on nouveau, not NVIDIA's driver (which TensorRT needs)"
    assert gap.fix.startswith("install the NVIDIA driver (Debian: sudo apt-get install nvidia-driver")


def test_nvidia_smi_that_cannot_reach_the_driver(pc):
    message = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver."
    choice = hardware.decide(pc(smi=message.replace("'", ""), gpus=(RTX_2060,)))
    assert choice.extra == "cpu" and "nvidia-smi fails: NVIDIA-SMI has failed because it couldnt" in choice.why
    assert choice.gaps[0].fix.startswith("reinstall or update the NVIDIA driver")


# -- AMD and Intel: WebGPU over Vulkan, OpenVINO on Intel -----------------------------------------------------------


def test_amd_gpu_gets_webgpu(pc):
    choice = hardware.decide(pc(gpus=(AMD_RX6600,), icds=("radeon_icd.x86_64.json", "lvp_icd.x86_64.json")))
    assert choice.vendor == "AMD" and choice.extras == ("webgpu",) and choice.extra == "webgpu"
    assert choice.tensorrt is None and choice.gaps == () and choice.why == "WebGPU over Vulkan"
    assert choice.gpu == "AMD Navi 23 [Radeon RX 6600/6600 XT/6600M] (amdgpu kernel driver)"
    assert choice.packages() == "onnxruntime-ep-webgpu" and choice.title() == "WebGPU"


def test_amd_gpu_names_the_vulkan_driver_vulkaninfo_reports(pc):
    choice = hardware.decide(pc(gpus=(AMD_RX6600,), vulkaninfo=VULKAN_HEADER + RADV + LLVMPIPE.format(n=1)))
    assert choice.gaps == ()
    assert choice.gpu == ("AMD Navi 23 [Radeon RX 6600/6600 XT/6600M] (amdgpu kernel driver); Vulkan: AMD Radeon RX "
                          "6600 (RADV NAVI23), radv Mesa 24.2.8")


@pytest.mark.parametrize(("setup", "problem"), [
    ({"loader": False}, "WebGPU needs the Vulkan loader (libvulkan.so.1), which is not installed"),
    ({"icds": ("lvp_icd.x86_64.json",)}, "no Vulkan driver for the AMD GPU is installed, so WebGPU cannot use it"),
    ({"vulkaninfo": VULKAN_HEADER + LLVMPIPE.format(n=0)},
     "Vulkan offers no AMD GPU here (vulkaninfo), so WebGPU cannot use it"),
    ({"vulkaninfo": None}, "Vulkan offers no AMD GPU here (vulkaninfo), so WebGPU cannot use it"),
])
def test_amd_gpu_without_vulkan_gets_the_vulkan_hint(pc, setup, problem):
    choice = hardware.decide(pc(gpus=(AMD_RX6600,), **setup))
    assert choice.extras == ("webgpu",) and choice.gaps == (Gap("Vulkan", problem, VULKAN_PACKAGES),)
    assert str(choice.gaps[0]) == f"{problem}: sudo apt-get install libvulkan1 mesa-vulkan-drivers"


def test_intel_gpu_gets_openvino_and_webgpu(pc):
    choice = hardware.decide(pc(gpus=(INTEL_IRIS,), icds=("intel_icd.x86_64.json",)))
    assert choice.vendor == "Intel" and choice.extras == ("openvino", "webgpu") and choice.extra == "openvino,webgpu"
    assert choice.gpu == "Intel Alder Lake-P GT2 [Iris Xe Graphics] (i915 kernel driver)"
    assert choice.gaps == (Gap("OpenCL", "OpenVINO reaches Intel GPUs through Intel's OpenCL driver, which is not "
                                         "installed", INTEL_OPENCL),)
    assert choice.packages() == "onnxruntime-ep-openvino, onnxruntime-ep-webgpu"
    assert choice.title() == "OpenVINO, WebGPU"


def test_intel_gpu_with_its_opencl_and_vulkan_drivers_lacks_nothing(pc):
    facts = pc(gpus=(INTEL_IRIS,), icds=("intel_icd.x86_64.json",), opencl=("intel.icd",))
    assert hardware.decide(facts).gaps == ()


def test_amd_beside_an_intel_igpu_gets_webgpu_for_the_amd_card(pc):
    choice = hardware.decide(pc(gpus=(INTEL_IRIS, AMD_RX6600), icds=("radeon_icd.x86_64.json",)))
    assert choice.vendor == "AMD" and choice.extras == ("webgpu",)


def test_gpu_seen_only_by_vulkan_counts(pc):
    """In a container /sys/class/drm may be missing while Vulkan shows the GPU."""
    choice = hardware.decide(pc(vulkaninfo=VULKAN_HEADER + RADV))
    assert choice.vendor == "AMD" and choice.extras == ("webgpu",) and choice.gaps == ()
    assert choice.gpu == "AMD Radeon RX 6600 (RADV NAVI23); Vulkan: radv Mesa 24.2.8"


# -- an OBS whose Python is too old for the plugin providers (onnxruntime 1.24+ is for 3.11+) -------------------------


OLD_PYTHON = "OBS's Python 3.10 is too old for ONNX Runtime's GPU providers (they need Python 3.11 or newer)"


def test_python_310_keeps_rtx_cards_on_tensorrt_and_amd_on_the_cpu(pc):
    rtx = hardware.decide(pc(smi=("NVIDIA GeForce RTX 3060", "575.64.03", "12.9", "8.6"), python="3.10"))
    assert rtx.extra == "gpu-cu12" and rtx.why == OLD_PYTHON and rtx.gaps == ()
    amd = hardware.decide(pc(gpus=(AMD_RX6600,), icds=("radeon_icd.x86_64.json",), python="3.10"))
    assert amd.vendor == "AMD" and amd.extra == "cpu" and amd.why == OLD_PYTHON
    pascal = hardware.decide(pc(smi=("NVIDIA GeForce GTX 1060 6GB", "550.120", "12.4", "6.1"), python="3.10"))
    assert pascal.extra == "cpu" and pascal.why.endswith(f"; {OLD_PYTHON}")
    for python in ("3.11", "3.14", ""):
        assert hardware.decide(pc(gpus=(AMD_RX6600,), icds=("radeon_icd.x86_64.json",), python=python)).extras == (
            "webgpu",)


# -- no GPU ---------------------------------------------------------------------------------------------------------


def test_no_gpu_is_a_cpu_install(pc):
    facts = pc(gpus=(VIRTIO,), vulkaninfo=VULKAN_HEADER + LLVMPIPE.format(n=0))
    assert [c.maker for c in facts.cards] == [""], "the simpledrm card has no PCI device; the virtual GPU no maker"
    choice = hardware.decide(facts)
    assert (choice.vendor, choice.extra, choice.tensorrt, choice.extras) == ("", "cpu", None, ())
    assert choice.gpu == "no GPU found" and choice.gaps == () and choice.title() == ""
    assert choice.why == "no NVIDIA driver (nvidia-smi not found), and no AMD or Intel GPU"


def test_nothing_readable_at_all_is_a_cpu_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(hardware, "DRM", tmp_path / "no-sysfs")
    facts = hardware.gather()
    assert facts.nvidia is None and facts.cards == () and facts.vulkan is None
    assert hardware.decide(facts).extra == "cpu"


# -- the readers on their own, and agreement with the engines --------------------------------------------------------


def test_pci_names():
    assert hardware.pci_name(PCI_IDS, 0x1002, 0x73FF) == "AMD Navi 23 [Radeon RX 6600/6600 XT/6600M]"
    assert hardware.pci_name(PCI_IDS, 0x8086, 0x46A6) == "Intel Alder Lake-P GT2 [Iris Xe Graphics]"
    assert hardware.pci_name(PCI_IDS, 0x1002, 0x1002) == "", "a subsystem line is not a device"
    assert hardware.pci_name(PCI_IDS, 0x8086, 0x1234) == "" and hardware.pci_name("", 0x1002, 0x73FF) == ""


def test_vulkaninfo_summary_is_read():
    devices = hardware.parse_vulkaninfo(VULKAN_HEADER + RADV + LLVMPIPE.format(n=1))
    assert [(d.name, d.vendor, d.gpu, d.driver) for d in devices] == [
        ("AMD Radeon RX 6600 (RADV NAVI23)", 0x1002, True, "radv Mesa 24.2.8"),
        ("llvmpipe (LLVM 19.1.1, 256 bits)", 0x10005, False, "llvmpipe Mesa 24.2.8 (LLVM 19.1.1)")]
    assert hardware.parse_vulkaninfo(VULKAN_HEADER) == ()


def test_the_installer_agrees_with_the_engines_and_pyproject():
    """hardware.py cannot import the engines (the installer runs before numpy is installed): the copies must agree."""
    tomllib = pytest.importorskip("tomllib")
    assert hardware.TENSORRT_RTX_CAPABILITIES == TENSORRT_RTX_CAPABILITIES
    assert {backend: plugin.wheel for backend, plugin in PLUGINS.items()} == hardware.WHEELS
    extras = tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())[
        "project"]["optional-dependencies"]
    for extra, wheel in hardware.WHEELS.items():
        assert any(req.startswith(wheel) for req in extras[extra]), (extra, extras[extra])


# -- the doctor: the GPU, its driver, what runs, and the fix for each gap --------------------------------------------


class Described(Probe):
    """What backend planning finds on the described PC: no TensorRT, no CUDA provider, these plugin devices."""

    def __init__(self, devices: dict[str, list[EpDevice]] | None = None, nvidia: GpuInfo | None = None) -> None:
        self.devices, self.gpu = devices or {}, nvidia

    def nvidia(self) -> tuple[GpuInfo | None, str]:
        return self.gpu, "" if self.gpu else "no NVIDIA driver (libcuda.so.1 not found)"

    def tensorrt(self) -> list[str]:
        return ["tensorrt not installed"]

    def cuda_provider(self) -> tuple[bool, str]:
        return False, "onnxruntime has no CUDA provider"

    def plugin_devices(self, provider: str) -> tuple[list[EpDevice], str]:
        if provider not in self.devices:
            return [], f"{PLUGINS[provider].wheel} not installed"
        return self.devices[provider], "" if self.devices[provider] else "finds no device here"

    def software_adapters_allowed(self) -> bool:
        return False


def doctor_lines(facts: Facts, probe: Probe) -> dict[str, tuple[str, str, str]]:
    return {c.topic: (c.status, c.message, c.fix) for c in doctor.check_gpu(facts, probe)}


def installed(module: str) -> str:
    return doctor.OK if importlib.util.find_spec(module) else doctor.FAIL


def test_doctor_on_an_amd_gpu_with_webgpu(pc):
    facts = pc(gpus=(AMD_RX6600,), vulkaninfo=VULKAN_HEADER + RADV)
    webgpu = EpDevice(PLUGINS["webgpu"].ep_name, "GPU", "AMD")
    lines = doctor_lines(facts, Described({"webgpu": [webgpu]}))
    assert lines["GPU"] == (doctor.OK, "AMD Navi 23 [Radeon RX 6600/6600 XT/6600M] (amdgpu kernel driver); Vulkan: "
                                       "AMD Radeon RX 6600 (RADV NAVI23), radv Mesa 24.2.8: WebGPU suits it", "")
    assert lines["onnxruntime-ep-webgpu"][0] == installed("onnxruntime_ep_webgpu")
    status, message, fix = lines["Backend"]
    assert status == doctor.OK and fix == ""
    assert message.startswith("the filter runs on onnxruntime WebGPU (AMD GPU) (not used: ")
    assert list(lines) == ["GPU", "onnxruntime-ep-webgpu", "Backend"]


def test_doctor_says_what_several_cameras_get():
    """Filters take turns (turns.py): the doctor says the matte updates divide, on the device the plan picks."""
    webgpu = EpDevice(PLUGINS["webgpu"].ep_name, "GPU", "AMD")
    (on_gpu,) = doctor.check_several_cameras(Described({"webgpu": [webgpu]}))
    (on_cpu,) = doctor.check_several_cameras(Described({}))
    assert on_gpu.topic == on_cpu.topic == "Cameras"
    assert "take turns on the GPU" in on_gpu.message and "1/N" in on_gpu.message and "cores" not in on_gpu.message
    assert "take turns on the CPU" in on_cpu.message and "~2 each for three" in on_cpu.message


@pytest.mark.parametrize("wheel", ["installed", "missing"])
def test_doctor_names_the_vulkan_fix_when_webgpu_finds_no_gpu(pc, monkeypatch, wheel):
    """The WebGPU wheel is part of the described PC (the doctor imports it for real, so this machine's own
    environment must not decide): installed, the first fix is the Vulkan loader; missing, the installer's."""
    facts = pc(gpus=(AMD_RX6600,), loader=False)
    real_check = doctor.import_check
    monkeypatch.setattr(doctor, "import_check", lambda dist: (
        (wheel == "installed", "0.4.0" if wheel == "installed" else "ModuleNotFoundError: no module")
        if dist == hardware.WHEELS["webgpu"] else real_check(dist)))
    described = Described({"webgpu": []} if wheel == "installed" else {})
    lines = doctor_lines(facts, described)
    assert lines["Vulkan"] == (doctor.WARN, "WebGPU needs the Vulkan loader (libvulkan.so.1), which is not installed",
                               VULKAN_PACKAGES)
    assert lines[hardware.WHEELS["webgpu"]][0] == (doctor.OK if wheel == "installed" else doctor.FAIL)
    status, message, fix = lines["Backend"]
    assert status == doctor.WARN and message.startswith("the filter runs on onnxruntime (CPU) (not used: ")
    if wheel == "installed":
        assert fix == VULKAN_PACKAGES
    else:
        assert fix == f"{doctor.installer_command()} (installs onnxruntime-ep-webgpu for this GPU)"
    rendered = doctor.render(list(doctor.check_gpu(facts, described)))
    assert f"fix: {VULKAN_PACKAGES}" in rendered


def test_doctor_on_an_rtx_card_with_an_old_driver_and_no_tensorrt(pc):
    facts = pc(smi=("NVIDIA GeForce RTX 3060", "550.120", "12.4", "8.6"))
    lines = doctor_lines(facts, Described(nvidia=GpuInfo("NVIDIA GeForce RTX 3060", (8, 6))))
    assert lines["GPU"] == (doctor.OK, "NVIDIA GeForce RTX 3060 (compute capability 8.6), driver 550.120, CUDA 12.4: "
                                       "TensorRT suits it", "")
    assert lines["tensorrt-cu12"][0] == installed("tensorrt")
    if lines["tensorrt-cu12"][0] == doctor.FAIL:
        assert lines["tensorrt-cu12"][2].endswith("(installs TensorRT for CUDA 12, pycuda for this GPU)")
    assert lines["Driver"] == (doctor.WARN, "TensorRT-RTX (a smaller install that builds its engines in seconds) needs "
                                            "a driver for CUDA 12.9 or newer",
                               "update the NVIDIA driver to 575 or later, then run the installer again")
    assert lines["Backend"][0] == doctor.WARN and lines["Backend"][1].startswith("the filter runs on onnxruntime (CPU)")
    if lines["tensorrt-cu12"][0] == doctor.FAIL:  # the first fix for the idle GPU: its missing wheel
        assert lines["Backend"][2] == lines["tensorrt-cu12"][2]


def test_doctor_on_a_gpu_this_python_has_no_package_for(pc):
    facts = pc(gpus=(AMD_RX6600,), icds=("radeon_icd.x86_64.json",), python="3.10")
    lines = doctor_lines(facts, Described())
    assert lines["GPU"] == (doctor.WARN, f"AMD Navi 23 [Radeon RX 6600/6600 XT/6600M] (amdgpu kernel driver): "
                                         f"{OLD_PYTHON}: the filter runs on the CPU", "")
    assert lines["Backend"][0] == doctor.OK and list(lines) == ["GPU", "Backend"]


def test_doctor_without_a_gpu_and_with_an_nvidia_card_but_no_driver(pc):
    lines = doctor_lines(pc(), Described())
    assert lines["GPU"] == (doctor.NA, "no GPU found: no NVIDIA driver (nvidia-smi not found), and no AMD or Intel "
                                       "GPU: the filter runs on the CPU", "")
    assert lines["Backend"][0] == doctor.OK and list(lines) == ["GPU", "Backend"]
    lines = doctor_lines(pc(gpus=((0x10DE, 0x2504, "nouveau"),)), Described())
    status, message, fix = lines["GPU"]
    assert status == doctor.WARN and message == ("NVIDIA GA106 [GeForce RTX 3060 Lite Hash Rate] (nouveau kernel "
                                                 "driver): no NVIDIA driver (nvidia-smi not found): the filter runs on "
                                                 "the CPU")
    assert fix.startswith("install the NVIDIA driver") and list(lines) == ["GPU", "Backend"]
    lines = doctor_lines(pc(smi="NVIDIA-SMI has failed because it could not communicate with the NVIDIA driver."),
                         Described())
    assert lines["GPU"][0] == doctor.FAIL and lines["GPU"][2].startswith("reinstall or update the NVIDIA driver")


def test_doctor_on_an_rtx_card_checks_the_tensorrt_rtx_wheel(pc):
    facts = pc(smi=("NVIDIA GeForce RTX 4070", "580.65.06", "13.0", "8.9"))
    rtx = EpDevice(PLUGINS["tensorrt-rtx"].ep_name, "GPU", "NVIDIA")
    lines = doctor_lines(facts, Described({"tensorrt-rtx": [rtx]}, nvidia=GpuInfo("NVIDIA GeForce RTX 4070", (8, 9))))
    assert lines["GPU"][:2] == (doctor.OK, "NVIDIA GeForce RTX 4070 (compute capability 8.9), driver 580.65.06, CUDA "
                                           "13.0: TensorRT-RTX suits it")
    assert lines["onnxruntime-ep-nv-tensorrt-rtx-cu12"][0] == installed("onnxruntime_ep_nv_tensorrt_rtx")
    assert lines["Backend"][0] == doctor.OK
    assert lines["Backend"][1].startswith("the filter runs on onnxruntime TensorRT-RTX (NVIDIA GPU)")
    for backend, plugin in PLUGINS.items():  # the doctor imports each wheel's own module
        assert doctor.MODULES.get(plugin.wheel, plugin.wheel.replace("-", "_")) == plugin.module, backend
