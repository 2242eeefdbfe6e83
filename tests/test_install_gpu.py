"""The installer's GPU step on a PC with the NVIDIA driver and no CUDA toolkit, driven as such a PC drives it: a fake
`nvidia-smi` on the PATH says which GPU and CUDA version the driver has, and a stand-in libcuda.so.1 made here (every
driver function pycuda binds; cuInit says "no device") is the driver.

The pycuda build is real: its sdist and NVIDIA's header wheels from PyPI, compiled into a fresh environment with no
toolkit, then `import pycuda.driver` against the stand-in, up to where a real driver is needed. TensorRT's wheels
cannot be fetched here (their libraries come from pypi.nvidia.com): for TensorRT the tests check the cu12/cu13
choice and the exact pip commands the installer runs, not an install.

Which GPU package the installer picks (TensorRT, TensorRT-RTX, WebGPU, OpenVINO, none) is checked the same way, with
the installer's own detection and package step on described PCs (fake nvidia-smi, /sys/class/drm trees) and pip
recorded instead of run; the decision on its own is in test_gpu_choice.py.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

from obs_rvm.install import cuda, hardware, pyenv
from obs_rvm.install.installer import Installer, build_parser
from obs_rvm.install.system import nvidia_gpu

from cuda_standin import make_libcuda
from install_helpers import fake_drm, fake_nvidia_smi

SRC = Path(__file__).resolve().parent.parent


# -- which packages for which driver ------------------------------------------------------------------------------


@pytest.mark.parametrize(("reported", "expected"), [
    ("12.4", (12, 4)), ("12.9", (12, 9)), ("12.0", (12, 0)), ("13.0", (13, 0)), ("13.2", (13, 2)),
])
def test_driver_cuda_version_picks_the_tensorrt_wheel_and_headers(reported, expected):
    packages, why = cuda.choose(reported)
    assert why == "" and packages is not None and packages.cuda == expected
    major, minor = expected
    assert packages.tensorrt == f"tensorrt-cu{major}>=10.5,<12"
    runtime = "nvidia-cuda-runtime-cu12" if major == 12 else "nvidia-cuda-runtime"
    profiler = "nvidia-cuda-profiler-api-cu12" if major == 12 else "nvidia-cuda-profiler-api"
    assert packages.header_requirements() == [f"{runtime}>={major}.0,<{major}.{minor + 1}",
                                              f"{profiler}>={major}.0,<{major}.{minor + 1}"]


@pytest.mark.parametrize(("reported", "reason"), [
    ("11.8", "the NVIDIA driver (CUDA 11.8) is too old for TensorRT 10.5+ (it needs a driver for CUDA 12 or newer: "
             "version 525 or later)"),
    ("10.2", "the NVIDIA driver (CUDA 10.2) is too old"),
    ("", "nvidia-smi does not say which CUDA version the driver supports"),
    ("14.1", "newer than this obs-rvm knows (CUDA 12, 13): update obs-rvm"),
])
def test_drivers_without_a_tensorrt_wheel_get_the_reason(reported, reason):
    packages, why = cuda.choose(reported)
    assert packages is None and reason in why and "\n" not in why


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def bare_pc(tmp_path, monkeypatch) -> Path:
    """A PC with nothing the GPU detection reads but what a test adds: no /sys/class/drm cards, no Vulkan, only the
    fake programs in the returned folder on the PATH (they use shell builtins alone)."""
    monkeypatch.setattr(hardware, "DRM", tmp_path / "sys" / "class" / "drm")
    for folders in ("LOADER_DIRS", "ICD_DIRS", "OPENCL_DIRS", "PCI_IDS"):
        monkeypatch.setattr(hardware, folders, ())
    monkeypatch.setenv("PATH", str(tmp_path / "bin"))
    return tmp_path / "bin"


class PipRecorder:
    """Stands in for pip and the pycuda build in the installer's package step: records what would be installed."""

    def __init__(self, monkeypatch, fails: bool = False) -> None:
        self.installed: list[str] = []
        self.fails = fails
        monkeypatch.setattr(pyenv, "pip_install", self.pip_install)
        monkeypatch.setattr(pyenv, "imports_ok", lambda python, check=pyenv.IMPORT_CHECK: (True, ""))
        monkeypatch.setattr(cuda, "install_pycuda", self.install_pycuda)

    def pip_install(self, venv: Path, target: str) -> tuple[bool, str]:
        self.installed.append(target)
        failed = self.fails and "[" in target
        return (False, "ERROR: No matching distribution found") if failed else (True, "")

    def install_pycuda(self, python, version, packages, say) -> tuple[bool, str]:
        self.installed.append(f"pycuda for CUDA {packages.major}")
        return True, ""


def choose_packages(args: list[str], monkeypatch, capsys, fails: bool = False) -> tuple[Installer, list[str], str]:
    """The installer's own detection and package step on the described PC: (the installer, what pip would install,
    what it printed)."""
    installer = Installer(build_parser().parse_args(args), SRC)
    installer.obs = SimpleNamespace(python_version="3.11")
    recorder = PipRecorder(monkeypatch, fails)
    installer._detect()
    installer._packages()
    if installer.packages is None:  # TensorRT's engine pre-build runs the environment's obs-rvm: not here
        installer._engines()
    return installer, recorder.installed, capsys.readouterr().out


RTX_FIX = ("TensorRT-RTX (a smaller install that builds its engines in seconds) needs a driver for CUDA 12.9 or newer; "
           "fix: update the NVIDIA driver to 575 or later, then run the installer again")
VULKAN_FIX = ("WebGPU needs the Vulkan loader (libvulkan.so.1), which is not installed; fix: sudo apt-get install "
              "libvulkan1 (NVIDIA's driver has its own Vulkan driver)")


@pytest.mark.parametrize(("smi", "line", "installed", "fix"), [
    (("NVIDIA GeForce RTX 3060", "575.64.03", "12.9", "8.6"),
     "NVIDIA GeForce RTX 3060 (compute capability 8.6), driver 575.64.03, CUDA 12.9: installing the GPU packages "
     "(onnxruntime-ep-nv-tensorrt-rtx-cu12): TensorRT-RTX, for RTX 30 and later", [f"{SRC}[tensorrt-rtx]"], ""),
    (("NVIDIA GeForce RTX 5080", "580.65.06", "13.0", "12.0"),
     "NVIDIA GeForce RTX 5080 (compute capability 12.0), driver 580.65.06, CUDA 13.0: installing the GPU packages "
     "(onnxruntime-ep-nv-tensorrt-rtx-cu12): TensorRT-RTX, for RTX 30 and later", [f"{SRC}[tensorrt-rtx]"], ""),
    (("NVIDIA GeForce RTX 3060", "550.120", "12.4", "8.6"),
     "NVIDIA GeForce RTX 3060 (compute capability 8.6), driver 550.120, CUDA 12.4: installing the GPU packages "
     "(TensorRT for CUDA 12, pycuda): the driver is too old for TensorRT-RTX",
     ["pycuda for CUDA 12", f"{SRC}[gpu-cu12]"], RTX_FIX),
    (("NVIDIA GeForce RTX 2060", "550.120", "12.4", "7.5"),
     "NVIDIA GeForce RTX 2060 (compute capability 7.5), driver 550.120, CUDA 12.4: installing the GPU packages "
     "(TensorRT for CUDA 12, pycuda): TensorRT-RTX runs on RTX 30 and later only",
     ["pycuda for CUDA 12", f"{SRC}[gpu-cu12]"], ""),
    (("NVIDIA A100-SXM4-80GB", "580.65.06", "13.0", "8.0"),
     "NVIDIA A100-SXM4-80GB (compute capability 8.0), driver 580.65.06, CUDA 13.0: installing the GPU packages "
     "(TensorRT for CUDA 13, pycuda): TensorRT-RTX runs on RTX 30 and later only",
     ["pycuda for CUDA 13", f"{SRC}[gpu-cu13]"], ""),
    (("NVIDIA GeForce GTX 1080", "470.256.02", "11.4", None),
     "NVIDIA GeForce GTX 1080, driver 470.256.02, CUDA 11.4: installing the GPU packages (onnxruntime-ep-webgpu): "
     "the NVIDIA driver (CUDA 11.4) is too old for TensorRT 10.5+ (it needs a driver for CUDA 12 or newer: version "
     "525 or later): WebGPU over Vulkan instead", [f"{SRC}[webgpu]"],
     VULKAN_FIX),
    (("NVIDIA GeForce GTX 1080", "550.120", "12.4", "6.1"),
     "NVIDIA GeForce GTX 1080 (compute capability 6.1), driver 550.120, CUDA 12.4: installing the GPU packages "
     "(onnxruntime-ep-webgpu): NVIDIA GeForce GTX 1080 (compute capability 6.1) is too old for TensorRT 10.5+, which "
     "needs 7.5 or newer (GeForce 16/RTX 20 and later): WebGPU over Vulkan instead", [f"{SRC}[webgpu]"],
     VULKAN_FIX),
])
def test_fake_nvidia_smi_drives_the_installers_gpu_decision(home, bare_pc, monkeypatch, capsys, smi, line,
                                                             installed, fix):
    fake_nvidia_smi(bare_pc, *smi)
    gpu = nvidia_gpu()
    assert gpu is not None and gpu.usable and gpu.cuda == smi[2]
    installer, pip, out = choose_packages([], monkeypatch, capsys)
    assert installer._describe_gpu() == line
    assert f"  GPU          {line}\n" in out
    assert ([m.strip() for m in out.splitlines() if "fix: " in m] == [fix]) if fix else "fix:" not in out
    assert pip == installed
    assert installer.state["extra"] == installer.choice.extra != "cpu"
    if "tensorrt-rtx" in line:
        assert "  Engines      TensorRT-RTX builds each engine the first time it needs it (seconds)" in out


@pytest.mark.parametrize(("gpus", "extra"), [(((0x1002, 0x73FF, "amdgpu"),), "webgpu"),
                                            (((0x8086, 0x46A6, "i915"),), "openvino,webgpu")])
def test_amd_and_intel_gpus_get_the_plugin_providers(home, bare_pc, monkeypatch, capsys, tmp_path, gpus, extra):
    monkeypatch.setattr(hardware, "DRM", fake_drm(tmp_path / "sys", gpus))
    installer, pip, out = choose_packages([], monkeypatch, capsys)
    maker = "AMD" if extra == "webgpu" else "Intel"
    title = "WebGPU" if extra == "webgpu" else "OpenVINO, WebGPU"
    assert pip == [f"{SRC}[{extra}]"] and installer.state["extra"] == extra
    assert f"  GPU          {maker} GPU [{gpus[0][0]:04x}:{gpus[0][1]:04x}] ({gpus[0][2]} kernel driver): installing " \
           f"the GPU packages" in out
    assert f"(libvulkan.so.1), which is not installed; fix: {hardware.VULKAN_PACKAGES}\n" in out
    assert f"  Engines      nothing to pre-build for {title}" in out
    assert (f"OpenCL driver, which is not installed; fix: {hardware.INTEL_OPENCL}\n" in out) is (maker == "Intel")


@pytest.mark.parametrize("flag", ["--cpu-only", "--cpu"])
def test_cpu_only_opts_out_of_every_gpu_package(home, bare_pc, monkeypatch, capsys, flag):
    fake_nvidia_smi(bare_pc, "NVIDIA GeForce RTX 3060", "575.64.03", "12.9", "8.6")
    installer, pip, out = choose_packages([flag], monkeypatch, capsys)
    assert installer._describe_gpu() == ("NVIDIA GeForce RTX 3060 (compute capability 8.6), driver 575.64.03, CUDA "
                                         "12.9: CPU-only install (--cpu-only)")
    assert pip == [str(SRC)] and installer.state["extra"] == "cpu" and "fix:" not in out
    assert "  Engines      skipped: no GPU package" in out


def test_no_gpu_is_a_cpu_install(home, bare_pc, monkeypatch, capsys):
    installer, pip, _ = choose_packages([], monkeypatch, capsys)
    assert installer._describe_gpu() == ("no GPU found: no NVIDIA driver (nvidia-smi not found), and no AMD or Intel "
                                         "GPU: CPU-only install (onnxruntime)")
    assert pip == [str(SRC)] and installer.state["extra"] == "cpu"


def test_failed_plugin_wheel_falls_back_to_cpu_with_the_reason(home, bare_pc, monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(hardware, "DRM", fake_drm(tmp_path / "sys", ((0x1002, 0x73FF, "amdgpu"),)))
    installer, pip, out = choose_packages([], monkeypatch, capsys, fails=True)
    assert pip == [f"{SRC}[webgpu]", str(SRC)]
    assert installer.warnings[0].startswith("the GPU packages (onnxruntime-ep-webgpu) could not be installed (ERROR: "
                                            "No matching distribution found): installed CPU-only")
    assert installer.state["extra"] == "cpu (the GPU packages failed)" and installer.state["stamp"] is None
    assert "  Engines      skipped: no GPU package" in out


@pytest.mark.skipif(shutil.which("obs") is None, reason="OBS Studio is not installed")
def test_install_sh_says_its_gpu_choice_before_changing_anything(tmp_path):
    """install.sh itself, with a fake nvidia-smi first on the PATH: the GPU line comes before anything changes (here
    a usage error stops it right after)."""
    fake_nvidia_smi(tmp_path / "bin", "NVIDIA GeForce RTX 4070", "580.65.06", "13.0", "8.9")
    (tmp_path / "home").mkdir()
    env = {"PATH": f"{tmp_path / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path / "home"), "LANG": "C.UTF-8"}
    result = subprocess.run([str(SRC / "installer" / "install.sh"), "--collection", "x"], capture_output=True,
                            text=True, env=env, timeout=120)
    if "  Python " not in result.stdout:
        pytest.skip(f"the installer stops before the GPU step here: {result.stderr.strip()}")
    assert ("  GPU          NVIDIA GeForce RTX 4070 (compute capability 8.9), driver 580.65.06, CUDA 13.0: installing "
            "the GPU packages (onnxruntime-ep-nv-tensorrt-rtx-cu12): TensorRT-RTX, for RTX 30 and later\n"
            in result.stdout), result.stdout
    assert result.returncode == 1 and "--collection only makes sense with --add-to-obs" in result.stderr
    assert result.stderr.strip().endswith("Nothing was changed.") and list((tmp_path / "home").iterdir()) == []


def test_the_exact_commands_of_the_gpu_step():
    python, work = Path("/home/u/.local/share/obs-rvm/venv/bin/python"), Path("/tmp/w")
    pip = [str(python), "-m", "pip", "--disable-pip-version-check"]
    assert cuda.build_commands(python, cuda.GpuPackages((12, 4)), work) == {
        "headers": [*pip, "install", "--no-deps", "--target", "/tmp/w/cuda",
                    "nvidia-cuda-runtime-cu12>=12.0,<12.5", "nvidia-cuda-profiler-api-cu12>=12.0,<12.5"],
        "sdist": [*pip, "download", "--no-deps", "--no-binary", "pycuda", "-d", "/tmp/w/sdist", "pycuda>=2025.1.2"],
        "wheel": [*pip, "wheel", "--no-deps", "--no-cache-dir", "-w", "/tmp/w/wheel", "/tmp/w/src"],
    }
    assert cuda.build_commands(python, cuda.GpuPackages((13, 1)), work)["headers"][-2:] == [
        "nvidia-cuda-runtime>=13.0,<13.2", "nvidia-cuda-profiler-api>=13.0,<13.2"]
    # After pycuda, TensorRT with obs-rvm: pip install <src>[gpu-cu12] / [gpu-cu13].
    assert cuda.tensorrt_target(Path("/src/obs-rvm"), cuda.GpuPackages((12, 4))) == "/src/obs-rvm[gpu-cu12]"
    assert cuda.tensorrt_target(Path("/src/obs-rvm"), cuda.GpuPackages((13, 0))) == "/src/obs-rvm[gpu-cu13]"


def test_pyproject_pins_the_same_tensorrt_range():
    tomllib = pytest.importorskip("tomllib")
    extras = tomllib.loads((SRC / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    for major in (12, 13):
        assert extras[f"gpu-cu{major}"] == [f"tensorrt-cu{major}{cuda.TENSORRT_RANGE}", cuda.PYCUDA]
    assert extras["gpu"] == ["obs-rvm[gpu-cu12]"]


def test_missing_compiler_or_python_headers_is_one_line_with_the_command(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)  # not root: say it, do not install it
    monkeypatch.setattr(shutil, "which", lambda name: None if name == "g++" else f"/usr/bin/{name}")
    monkeypatch.setattr(cuda, "python_headers", lambda python: False)
    why = cuda.build_tools(Path(sys.executable), "3.11", print)
    assert why == ("pycuda is compiled on this PC and needs g++, python3.11-dev: sudo apt-get install -y g++ "
                   "python3.11-dev, then run this again")


# -- the real build -------------------------------------------------------------------------------------------------


def step_env(home: Path, bin_dir: Path, driver_dir: Path | None) -> dict[str, str]:
    """A driver-only PC's environment: no toolkit on the PATH; pip's cache and the wheel cache shared with later
    runs (so CI compiles pycuda once); the driver found by the loader the way OBS would find it."""
    keep = ("LANG", "LC_ALL", "TMPDIR", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
    env.setdefault("PIP_CACHE_DIR", str(Path.home() / ".cache" / "pip"))
    env.update(HOME=str(home), PATH=f"{bin_dir}:/usr/bin:/bin",
               XDG_CACHE_HOME=str(Path(os.environ["OBS_RVM_CACHE_DIR"]) / "xdg"))
    if driver_dir:
        env["LD_LIBRARY_PATH"] = str(driver_dir)
    return env


def fresh_venv(path: Path) -> Path:
    subprocess.run([sys._base_executable, "-m", "venv", str(path)], check=True)
    return path / "bin" / "python"


@pytest.mark.slow
def test_gpu_step_builds_pycuda_without_a_cuda_toolkit(tmp_path, pypi):
    bin_dir = fake_nvidia_smi(tmp_path / "bin", "NVIDIA GeForce RTX 3060", "550.120", "12.4", "8.6")
    env = step_env(tmp_path / "home", bin_dir, tmp_path / "driver")
    # A toolkit elsewhere on this machine (/usr/local/cuda) must be invisible to the build: no nvcc on the PATH (pycuda
    # would take its folder as CUDA_ROOT) and no cuda.h where the compiler looks by itself.
    visible = subprocess.run(["gcc", "-E", "-x", "c", "-"], input="#include <cuda.h>\n", capture_output=True,
                             text=True, env=env).returncode == 0
    if shutil.which("nvcc", path=env["PATH"]) or visible:
        pytest.skip("a CUDA toolkit is visible to the compiler here: this test is about PCs without one")
    (tmp_path / "home").mkdir()
    python = fresh_venv(tmp_path / "venv")
    packages = cuda.GpuPackages((12, 4))
    include, why = cuda.collect_headers(python, packages, tmp_path / "headers")
    assert why == ""
    make_libcuda([Path(p) for p in include], tmp_path / "driver")

    step = subprocess.run([sys.executable, "-m", "obs_rvm.install.cuda", str(python)], capture_output=True,
                          text=True, env=env, timeout=1500)
    assert step.returncode == 0, step.stdout[-3000:] + step.stderr
    assert ("compiling pycuda against CUDA 12.4's headers" in step.stdout
            or "(built here before)" in step.stdout), step.stdout[-3000:]
    assert "TensorRT would be: pip install tensorrt-cu12>=10.5,<12" in step.stdout

    probe = "import pycuda.driver as d\ntry:\n    d.init()\nexcept d.Error as e:\n    print('init:', e)\n"
    loaded = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, env=env)
    assert loaded.returncode == 0, loaded.stderr
    assert loaded.stdout.strip() == "init: cuInit failed: no CUDA-capable device is detected (stand-in driver)"
    (module,) = (tmp_path / "venv").glob("lib/python*/site-packages/pycuda/_driver*.so")
    linked = subprocess.run(["ldd", str(module)], capture_output=True, text=True, env=env).stdout
    assert f"libcuda.so.1 => {tmp_path / 'driver' / 'libcuda.so.1'}" in linked
    assert "curand" not in linked and "cudart" not in linked, "nothing but the driver at run time (inside OBS)"
    assert "/usr/local/cuda" not in linked
    no_driver = subprocess.run([str(python), "-c", "import pycuda.driver"], capture_output=True, text=True,
                               env=step_env(tmp_path / "home", bin_dir, None))
    assert "libcuda.so.1: cannot open shared object file" in no_driver.stderr

    # A second environment (a re-run, a repair) installs the wheel built above: no second compile.
    again = subprocess.run([sys.executable, "-m", "obs_rvm.install.cuda", str(fresh_venv(tmp_path / "venv2"))],
                           capture_output=True, text=True, env=env, timeout=600)
    assert again.returncode == 0 and "(built here before)" in again.stdout, again.stdout[-2000:] + again.stderr
