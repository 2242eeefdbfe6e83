"""Backend planning on machines this one is not: an RTX card, a Turing or data-centre GPU, an AMD GPU, an Intel iGPU,
no GPU at all. The real `plan` runs; only what it asks of the machine (Probe: the NVIDIA GPU, TensorRT, the CUDA
provider, the devices each plugin provider lists) is described by the test. What this machine really answers is
checked in test_backend_selection.py and, for the plugin libraries, at the end of this file."""

from __future__ import annotations

import importlib.util
import logging

import pytest

from obs_rvm.engines import BACKENDS, Candidate, Probe, plan
from obs_rvm.engines.gpu import GpuInfo
from obs_rvm.engines.plugin_eps import PLUGINS, SOFTWARE_ADAPTER_VARIABLE, EpDevice, devices
from obs_rvm.errors import BackendError

NO_DRIVER = "no NVIDIA driver (libcuda.so.1 not found)"
TRT_MISSING = "tensorrt not installed, pycuda not installed (pip install 'obs-rvm[gpu]')"
NO_CUDA_EP = "onnxruntime has no CUDA provider (onnxruntime-gpu not installed)"


def gpu_device(provider: str, vendor: str, **metadata: str) -> EpDevice:
    return EpDevice(PLUGINS[provider].ep_name, "GPU", vendor, metadata)


def cpu_device(provider: str, vendor: str, **metadata: str) -> EpDevice:
    return EpDevice(PLUGINS[provider].ep_name, "CPU", vendor, metadata)


class Machine(Probe):
    """A described machine: what each question of the planner gets, and which plugin libraries it asked for."""

    def __init__(self, nvidia: GpuInfo | None = None, tensorrt: bool = False, cuda: bool = False,
                 plugins: dict[str, list[EpDevice]] | None = None, software: bool = False) -> None:
        self.gpu, self.has_tensorrt, self.has_cuda = nvidia, tensorrt, cuda
        self.plugins = plugins or {}
        self.software = software
        self.asked: list[str] = []

    def nvidia(self) -> tuple[GpuInfo | None, str]:
        return self.gpu, "" if self.gpu else NO_DRIVER

    def tensorrt(self) -> list[str]:
        return [] if self.has_tensorrt and self.gpu else [TRT_MISSING] if not self.has_tensorrt else [NO_DRIVER]

    def cuda_provider(self) -> tuple[bool, str]:
        return (True, "") if self.has_cuda else (False, NO_CUDA_EP)

    def plugin_devices(self, provider: str) -> tuple[list[EpDevice], str]:
        self.asked.append(provider)
        wheel = PLUGINS[provider].wheel
        if provider not in self.plugins:
            return [], f"{wheel} not installed (pip install {wheel})"
        found = self.plugins[provider]
        return found, "" if found else f"the {PLUGINS[provider].title} provider finds no device here"

    def software_adapters_allowed(self) -> bool:
        return self.software


RTX_3060 = GpuInfo("NVIDIA GeForce RTX 3060", (8, 6))
T4 = GpuInfo("Tesla T4", (7, 5))
GTX_1060 = GpuInfo("NVIDIA GeForce GTX 1060", (6, 1))


def providers(candidates: list[Candidate]) -> list[str]:
    return [c.provider for c in candidates]


def test_saved_values_keep_their_meaning():
    """auto, tensorrt and onnxruntime were the only values before the providers: a saved onnxruntime is CUDA if it
    can run, else the CPU, and asks no plugin library for anything."""
    machine = Machine(RTX_3060, cuda=True, plugins={"webgpu": [gpu_device("webgpu", "NVIDIA")]})
    candidates, notes = plan("onnxruntime", probe=machine)
    assert candidates == [Candidate("onnxruntime", gpu=True), Candidate("onnxruntime", gpu=False)]
    assert providers(candidates) == ["cuda", "cpu"] and notes == [] and machine.asked == []
    machine = Machine(None)
    candidates, notes = plan("onnxruntime", probe=machine)
    assert candidates == [Candidate("onnxruntime", gpu=False)]
    assert notes == [f"onnxruntime CUDA skipped: {NO_CUDA_EP}"]
    machine = Machine(RTX_3060, tensorrt=True)
    assert plan("tensorrt", probe=machine) == ([Candidate("tensorrt", gpu=True, fp16=True)], [])
    assert plan("tensorrt", fp16=False, probe=machine)[0] == [Candidate("tensorrt", gpu=True)]
    with pytest.raises(BackendError, match=r"^the tensorrt backend cannot run here: .*Choose backend auto to fall "
                                           r"back to onnxruntime$"):
        plan("tensorrt", probe=Machine(RTX_3060))


def test_rtx_card_without_tensorrt_runs_tensorrt_rtx_in_fp16():
    rtx = gpu_device("tensorrt-rtx", "NVIDIA", version="0.5.0")
    machine = Machine(RTX_3060, cuda=True, plugins={"tensorrt-rtx": [rtx], "webgpu": [gpu_device("webgpu", "NVIDIA")]})
    candidates, notes = plan("auto", probe=machine)
    assert providers(candidates) == ["tensorrt-rtx", "cuda", "webgpu", "cpu"]
    first = candidates[0]
    assert first.backend == "onnxruntime" and first.gpu and first.fp16 and first.device == rtx
    assert first.label() == "onnxruntime TensorRT-RTX (NVIDIA GPU)"
    assert notes == [f"TensorRT skipped: {TRT_MISSING}",
                     "OpenVINO skipped: onnxruntime-ep-openvino not installed (pip install onnxruntime-ep-openvino)"]
    assert not plan("auto", fp16=False, probe=machine)[0][0].fp16


def test_tensorrt_comes_first_where_installed():
    machine = Machine(RTX_3060, tensorrt=True, cuda=True,
                      plugins={"tensorrt-rtx": [gpu_device("tensorrt-rtx", "NVIDIA")]})
    candidates, _ = plan("auto", probe=machine)
    assert providers(candidates) == ["tensorrt", "tensorrt-rtx", "cuda", "cpu"]


@pytest.mark.parametrize(("capability", "runs"), [((7, 5), False), ((8, 0), False), ((8, 6), True), ((8, 7), False),
                                                  ((8, 9), True), ((9, 0), False), ((10, 0), False), ((12, 0), True),
                                                  ((12, 1), True)])
def test_tensorrt_rtx_only_on_the_gpus_its_provider_accepts(capability, runs):
    """The provider's library refuses all but 8.6, 8.9 and 12.0+: elsewhere it is not even loaded, and the note says
    which backend runs there instead."""
    gpu = GpuInfo("GPU", capability)
    machine = Machine(gpu, cuda=True, plugins={"tensorrt-rtx": [gpu_device("tensorrt-rtx", "NVIDIA")]})
    candidates, notes = plan("auto", probe=machine)
    assert (candidates[0].provider == "tensorrt-rtx") is runs
    assert ("tensorrt-rtx" in machine.asked) is runs
    if not runs:
        note = next(n for n in notes if n.startswith("TensorRT-RTX skipped: "))
        assert "8.6, 8.9 and 12.0" in note and gpu.describe() in note and "tensorrt or cuda backend" in note
        with pytest.raises(BackendError, match=r"the tensorrt-rtx backend cannot run here: .*tensorrt or cuda"):
            plan("tensorrt-rtx", probe=machine)


def test_nvidia_gpu_with_only_webgpu_prefers_webgpu_to_an_intel_igpu():
    """A laptop with an old NVIDIA GPU and an Intel iGPU, with both plugin wheels: WebGPU (which picks the NVIDIA
    GPU) before OpenVINO, the CPU last, and a warning that the NVIDIA GPU's own paths are missing."""
    machine = Machine(GTX_1060, plugins={"webgpu": [gpu_device("webgpu", "NVIDIA")],
                                         "openvino": [gpu_device("openvino", "Intel", ov_device="GPU"),
                                                      cpu_device("openvino", "Intel", ov_device="CPU")]})
    candidates, notes = plan("auto", probe=machine)
    assert providers(candidates) == ["webgpu", "openvino", "cpu"]
    assert candidates[0].gpu and candidates[0].pad_conv_channels
    assert not any(c.pad_conv_channels for c in candidates[1:])
    assert [n.split(":")[0] for n in notes] == ["TensorRT skipped", "TensorRT-RTX skipped", "onnxruntime CUDA skipped"]
    assert "compute capability 6.1" in notes[1]
    assert "tensorrt-rtx" not in machine.asked


def test_amd_gpu_runs_webgpu():
    machine = Machine(None, plugins={"webgpu": [gpu_device("webgpu", "AMD")], "openvino": []})
    candidates, notes = plan("auto", probe=machine)
    assert providers(candidates) == ["webgpu", "cpu"]
    assert candidates[0].label() == "onnxruntime WebGPU (AMD GPU)"
    assert notes == [f"TensorRT skipped: {TRT_MISSING}", f"TensorRT-RTX skipped: {NO_DRIVER}",
                     f"onnxruntime CUDA skipped: {NO_CUDA_EP}",
                     "OpenVINO skipped: the OpenVINO provider finds no device here"]


def test_intel_gpu_runs_openvino_then_webgpu():
    machine = Machine(None, plugins={"webgpu": [gpu_device("webgpu", "Intel")],
                                     "openvino": [cpu_device("openvino", "Intel", ov_device="CPU"),
                                                  gpu_device("openvino", "Intel", ov_device="GPU")]})
    candidates, _ = plan("auto", probe=machine)
    assert providers(candidates) == ["openvino", "webgpu", "cpu"]
    assert candidates[0].device.metadata["ov_device"] == "GPU" and candidates[0].gpu


def test_openvino_on_an_intel_cpu_only_when_asked_for():
    """Without an Intel GPU, auto keeps onnxruntime's own CPU provider; `openvino` by name runs on the CPU device."""
    machine = Machine(None, plugins={"openvino": [cpu_device("openvino", "Intel", ov_device="CPU")]})
    candidates, notes = plan("auto", probe=machine)
    assert providers(candidates) == ["cpu"]
    assert "OpenVINO skipped: the OpenVINO provider offers no GPU here (only Intel CPU)" in notes
    candidates, notes = plan("openvino", probe=machine)
    assert providers(candidates) == ["openvino"] and not candidates[0].gpu and notes == []


def test_webgpu_software_adapter_only_when_the_user_allows_it():
    """Mesa's lavapipe is a CPU pretending to be a GPU: never picked on its own, and when allowed it counts as the
    CPU it is (the CPU's smaller downsample ratio and OBS's live mode follow from `gpu`)."""
    lavapipe = cpu_device("webgpu", "AMD")
    machine = Machine(None, plugins={"webgpu": [lavapipe]})
    candidates, notes = plan("auto", probe=machine)
    assert providers(candidates) == ["cpu"]
    assert any(n.startswith("WebGPU skipped: ") and SOFTWARE_ADAPTER_VARIABLE in n for n in notes)
    with pytest.raises(BackendError, match=f"only a software adapter, which {SOFTWARE_ADAPTER_VARIABLE}=1 allows"):
        plan("webgpu", probe=machine)
    machine.software = True
    candidates, _ = plan("webgpu", probe=machine)
    assert candidates == [Candidate("onnxruntime", gpu=False, provider="webgpu", device=lavapipe)]
    assert candidates[0].pad_conv_channels
    assert candidates[0].label() == "onnxruntime WebGPU (software Vulkan adapter on the CPU)"


@pytest.mark.parametrize(("backend", "machine", "advice"), [
    ("webgpu", Machine(None), "pip install onnxruntime-ep-webgpu"),
    ("openvino", Machine(None), "pip install onnxruntime-ep-openvino"),
    ("tensorrt-rtx", Machine(RTX_3060), "pip install onnxruntime-ep-nv-tensorrt-rtx-cu12"),
    ("tensorrt-rtx", Machine(None), NO_DRIVER),
    ("cuda", Machine(RTX_3060), "pip install onnxruntime-gpu"),
    ("cuda", Machine(None, cuda=True), NO_DRIVER),
    ("webgpu", Machine(None, plugins={"webgpu": []}), "finds no device"),
])
def test_explicit_request_that_cannot_run_says_what_to_do(backend, machine, advice):
    with pytest.raises(BackendError) as error:
        plan(backend, probe=machine)
    message = str(error.value)
    assert message.startswith(f"the {backend} backend cannot run here: ") and advice in message
    assert message.endswith("Choose backend auto to fall back to what runs here") and "\n" not in message


def test_no_gpu_runs_the_cpu_and_says_why_each_provider_was_skipped(caplog):
    machine = Machine(None)
    with caplog.at_level(logging.INFO, logger="obs_rvm"):
        candidates, notes = plan("auto", probe=machine)
    assert candidates == [Candidate("onnxruntime", gpu=False)]
    assert [n.split(" skipped: ")[0] for n in notes] == ["TensorRT", "TensorRT-RTX", "onnxruntime CUDA", "OpenVINO",
                                                         "WebGPU"]
    assert all("\n" not in n for n in notes)
    assert all(r.levelno == logging.INFO for r in caplog.records), "no GPU: the CPU is expected, not a warning"
    assert plan("cpu", probe=machine) == ([Candidate("onnxruntime", gpu=False)], [])


def test_unused_nvidia_gpu_is_a_warning(caplog):
    with caplog.at_level(logging.INFO, logger="obs_rvm"):
        plan("auto", probe=Machine(RTX_3060))
    assert any(r.levelno == logging.WARNING and "TensorRT skipped" in r.getMessage() for r in caplog.records)


def test_every_backend_is_planned():
    for backend in BACKENDS:
        machine = Machine(RTX_3060, tensorrt=True, cuda=True,
                          plugins={p: [gpu_device(p, "NVIDIA")] for p in PLUGINS})
        candidates, _ = plan(backend, probe=machine)
        assert candidates and (backend in ("auto", "onnxruntime") or providers(candidates) == [backend])


# -- the plugin libraries on this machine --------------------------------------------------------------------------


@pytest.mark.parametrize("provider", list(PLUGINS))
def test_plugin_library_loads_or_says_why_in_one_line(provider):
    """Here (no GPU): TensorRT-RTX's library stops at the missing NVIDIA driver, WebGPU and OpenVINO load and list no
    device. Where a wheel is missing, the reason is the pip command. A machine with a device lists it instead."""
    plugin = PLUGINS[provider]
    found, why = devices(provider)
    if importlib.util.find_spec(plugin.module) is None:
        assert (found, why) == ([], f"{plugin.wheel} not installed (pip install {plugin.wheel})")
        return
    if found:
        assert why == "" and all(d.ep_name == plugin.ep_name and d.kind in ("CPU", "GPU", "NPU") for d in found)
    else:
        assert why and "\n" not in why
        if provider == "tensorrt-rtx":
            assert "libcuda.so.1" in why or "finds no device" in why
        else:
            assert why.startswith(f"the {plugin.title} provider finds no device here")
    assert devices(provider) == (found, why), "registered once, the same answer after"
