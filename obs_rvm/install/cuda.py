"""The NVIDIA GPU packages on a PC that has the NVIDIA driver and no CUDA toolkit (what streamers and gamers have).

TensorRT's wheels bring their own CUDA libraries, but they come per CUDA major (tensorrt-cu12, tensorrt-cu13): the
driver decides which one can run. pycuda has no binary wheels; it compiles against `cuda.h` and links `libcuda`.
NVIDIA's runtime wheels on PyPI carry `cuda.h` (and the profiler wheel `cudaProfiler.h`, the only other header
pycuda's driver module includes), and the driver itself is the `libcuda.so.1` to link, so pycuda builds with a C++
compiler and the Python headers alone. It is built without CURAND (obs-rvm does not use it), so the module needs
nothing at run time but the driver: no LD_LIBRARY_PATH inside OBS. The headers are taken no newer than the driver's
CUDA version, so pycuda never binds a driver function this driver lacks. Built wheels are kept per (CUDA version,
Python version) in the cache, so a re-run or a repair does not compile again.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from . import layout
from .pyenv import child_env, run_logged
from .system import NvidiaGpu, nvidia_gpu

PYCUDA = "pycuda>=2025.1.2"
"""pycuda older than 2025.1.2 does not compile against CUDA 13's headers."""
TENSORRT_RANGE = ">=10.5,<12"
"""The TensorRT releases the engine code was written and reviewed against (10.5 dropped pre-Turing GPUs); the same
range as pyproject's gpu extras."""
HEADER_WHEELS = {12: ("nvidia-cuda-runtime-cu12", "nvidia-cuda-profiler-api-cu12"),
                 13: ("nvidia-cuda-runtime", "nvidia-cuda-profiler-api")}
"""Where cuda.h and cudaProfiler.h come from. For CUDA 13 NVIDIA dropped the -cu13 suffix (the -cu13 names on PyPI
are placeholders that refuse to install)."""
HEADERS = ("cuda.h", "cudaProfiler.h")
MIN_CAPABILITY = (7, 5)
"""As obs_rvm.engines.gpu.MIN_TENSORRT_CAPABILITY (not imported: the installer runs before numpy is installed)."""
DRIVER_TOO_OLD = ("too old for TensorRT 10.5+ (it needs a driver for CUDA 12 or newer: version 525 or later)")
SITECONF = """\
# Written by the obs-rvm installer: CUDA headers from NVIDIA's wheels, libcuda from the driver, no CURAND.
CUDA_ROOT = None
CUDA_INC_DIR = {include!r}
CUDADRV_LIB_DIR = [{lib!r}]
CUDA_ENABLE_CURAND = False
CUDA_ENABLE_GL = False
"""


@dataclass(frozen=True)
class GpuPackages:
    """What to install for a driver that supports CUDA `cuda` (nvidia-smi's "CUDA Version")."""

    cuda: tuple[int, int]

    @property
    def major(self) -> int:
        return self.cuda[0]

    @property
    def extra(self) -> str:
        """pyproject's extra with TensorRT for this CUDA major (and pycuda)."""
        return f"gpu-cu{self.major}"

    @property
    def tensorrt(self) -> str:
        return f"tensorrt-cu{self.major}{TENSORRT_RANGE}"

    def header_requirements(self) -> list[str]:
        """The header wheels, no newer than the driver (12.4 -> >=12.0,<12.5: the newest 12.4.x)."""
        major, minor = self.cuda
        return [f"{name}>={major}.0,<{major}.{minor + 1}" for name in HEADER_WHEELS[major]]

    def wheel_cache(self, python_version: str) -> Path:
        major, minor = self.cuda
        return layout.cache_root() / "wheels" / f"pycuda-cuda{major}.{minor}-py{python_version}"


def for_gpu(gpu: NvidiaGpu) -> tuple[GpuPackages | None, str]:
    """What nvidia-smi reported -> (the packages, "") or (None, why this PC gets the CPU install)."""
    cc = gpu.compute_capability
    if cc is not None and cc < MIN_CAPABILITY:
        return None, (f"{gpu.names[0]} (compute capability {cc[0]}.{cc[1]}) is too old for TensorRT 10.5+, which "
                      f"needs {MIN_CAPABILITY[0]}.{MIN_CAPABILITY[1]} or newer (GeForce 16/RTX 20 and later)")
    return choose(gpu.cuda)


def choose(cuda_version: str) -> tuple[GpuPackages | None, str]:
    """(the packages, "") for nvidia-smi's CUDA version, or (None, why the GPU packages cannot be installed)."""
    found = re.fullmatch(r"(\d+)\.(\d+)(?:\.\d+)?", cuda_version.strip())
    if not found:
        return None, "nvidia-smi does not say which CUDA version the driver supports"
    cuda = (int(found.group(1)), int(found.group(2)))
    if cuda[0] < min(HEADER_WHEELS):
        return None, f"the NVIDIA driver (CUDA {cuda[0]}.{cuda[1]}) is {DRIVER_TOO_OLD}"
    if cuda[0] not in HEADER_WHEELS:
        return None, (f"the NVIDIA driver supports CUDA {cuda[0]}.{cuda[1]}, newer than this obs-rvm knows "
                      f"(CUDA {', '.join(map(str, HEADER_WHEELS))}): update obs-rvm")
    return GpuPackages(cuda), ""


def driver_library(python: Path) -> Path | None:
    """The file the dynamic loader opens for libcuda.so.1 (what pycuda will load inside OBS), or None."""
    code = ("import ctypes, sys\nctypes.CDLL('libcuda.so.1')\n"
            "print(next(l.split()[-1] for l in open('/proc/self/maps') if 'libcuda.so' in l))")
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=child_env())
    path = out.stdout.strip()
    return Path(path) if out.returncode == 0 and path else None


def python_headers(python: Path) -> bool:
    code = "import os, sysconfig; print(os.path.isfile(os.path.join(sysconfig.get_paths()['include'], 'Python.h')))"
    out = subprocess.run([str(python), "-c", code], capture_output=True, text=True, env=child_env())
    return out.stdout.strip() == "True"


def build_tools(python: Path, python_version: str, say) -> str:
    """"" when pycuda can be compiled here; else the one line that says what to install. Installs it as root."""
    packages = ([] if shutil.which("g++") else ["g++"]) + \
               ([] if python_headers(python) else [f"python{python_version}-dev"])
    if not packages:
        return ""
    command = f"apt-get install -y {' '.join(packages)}"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("GPU", f"installing {', '.join(packages)} (pycuda is compiled here)")
        code, _ = run_logged(["apt-get", "install", "-y", "-q", *packages])
        if code == 0 and shutil.which("g++") and python_headers(python):
            return ""
    return f"pycuda is compiled on this PC and needs {', '.join(packages)}: sudo {command}, then run this again"


def pip(python: Path, *args: str) -> list[str]:
    return [str(python), "-m", "pip", "--disable-pip-version-check", *args]


def build_commands(python: Path, packages: GpuPackages, work: Path) -> dict[str, list[str]]:
    """The pip commands of a pycuda build, by step: headers into work/cuda, the sdist into work/sdist, the wheel
    (from the unpacked sdist in work/src) into work/wheel."""
    return {
        "headers": pip(python, "install", "--no-deps", "--target", str(work / "cuda"),
                       *packages.header_requirements()),
        "sdist": pip(python, "download", "--no-deps", "--no-binary", "pycuda", "-d", str(work / "sdist"), PYCUDA),
        "wheel": pip(python, "wheel", "--no-deps", "--no-cache-dir", "-w", str(work / "wheel"), str(work / "src")),
    }


def collect_headers(python: Path, packages: GpuPackages, work: Path) -> tuple[list[str], str]:
    """Install the header wheels into work/cuda; (the include folders, "") or ([], why not)."""
    code, last = run_logged(build_commands(python, packages, work)["headers"])
    if code != 0:
        return [], f"the CUDA header wheels could not be installed ({_reason(last)})"
    include = []
    for header in HEADERS:
        found = sorted((work / "cuda").rglob(header))
        if not found:
            return [], f"{header} is not in {', '.join(packages.header_requirements())}"
        include.append(str(found[0].parent))
    return list(dict.fromkeys(include)), ""


def _reason(last: list[str]) -> str:
    errors = [line.strip() for line in last if line.strip().startswith("ERROR")]
    return errors[-1] if errors else (last[-1].strip() if last else "no output")


def build_pycuda(python: Path, packages: GpuPackages, driver: Path, out: Path) -> tuple[Path | None, str]:
    """Compile pycuda's wheel into `out` (about two minutes on two cores); (the wheel, "") or (None, why not)."""
    with tempfile.TemporaryDirectory(prefix="obs-rvm-pycuda-") as tmp:
        work = Path(tmp)
        include, why = collect_headers(python, packages, work)
        if why:
            return None, why
        lib = work / "lib"
        lib.mkdir()
        (lib / "libcuda.so").symlink_to(driver)  # the linker looks for the unversioned name
        commands = build_commands(python, packages, work)
        code, last = run_logged(commands["sdist"])
        sdists = sorted((work / "sdist").glob("pycuda-*.tar.gz"))
        if code != 0 or not sdists:
            return None, f"pycuda's source could not be downloaded ({_reason(last)})"
        with tarfile.open(sdists[-1]) as archive:
            if hasattr(tarfile, "data_filter"):  # Python 3.10.12+/3.11.4+
                archive.extractall(work / "unpacked", filter="data")
            else:
                archive.extractall(work / "unpacked")
        (src,) = (work / "unpacked").iterdir()
        src.rename(work / "src")
        (work / "src" / "siteconf.py").write_text(SITECONF.format(include=include, lib=str(lib)))
        code, last = run_logged(commands["wheel"])
        wheels = sorted((work / "wheel").glob("pycuda-*.whl"))
        if code != 0 or not wheels:
            return None, f"pycuda did not compile ({_reason(last)})"
        out.mkdir(parents=True, exist_ok=True)
        target = out / wheels[-1].name
        shutil.move(wheels[-1], target)
        return target, ""


def install_pycuda(python: Path, python_version: str, packages: GpuPackages, say) -> tuple[bool, str]:
    """pycuda in the environment of `python`, built here if no wheel for this CUDA and Python is cached; then
    `import pycuda.driver` must work (it binds every driver function when it loads)."""
    why = build_tools(python, python_version, say)
    if why:
        return False, why
    driver = driver_library(python)
    if driver is None:
        return False, "the NVIDIA driver's libcuda.so.1 cannot be loaded (reinstall the driver)"
    cache = packages.wheel_cache(python_version)
    wheels = sorted(cache.glob("pycuda-*.whl")) if cache.is_dir() else []
    if wheels:
        wheel = wheels[-1]
        say("GPU", f"pycuda: {wheel.name} (built here before)")
    else:
        major, minor = packages.cuda
        say("GPU", f"compiling pycuda against CUDA {major}.{minor}'s headers (about 2 minutes, once)")
        wheel, why = build_pycuda(python, packages, driver, cache)
        if wheel is None:
            return False, why
    code, last = run_logged(pip(python, "install", str(wheel), "numpy>=1.24"))  # pycuda.driver imports numpy
    if code != 0:
        return False, f"pycuda could not be installed ({_reason(last)})"
    out = subprocess.run([str(python), "-c", "import pycuda.driver"], capture_output=True, text=True,
                         env=child_env())
    if out.returncode != 0:
        lines = out.stderr.strip().splitlines()
        return False, f"pycuda was built but does not load ({lines[-1] if lines else out.returncode})"
    return True, ""


def tensorrt_target(src: Path, packages: GpuPackages) -> str:
    """What pip installs after pycuda: obs-rvm with the extra that brings TensorRT for this CUDA major."""
    return f"{src}[{packages.extra}]"


def main(argv: list[str] | None = None) -> int:
    """`python -m obs_rvm.install.cuda PYTHON`: the installer's pycuda step alone, for the environment of PYTHON
    (what tests and scripts/gpu_wheelhouse.sh drive; install.sh runs the same functions)."""
    import argparse
    import sys

    parser = argparse.ArgumentParser(prog="python -m obs_rvm.install.cuda", description=main.__doc__)
    parser.add_argument("python", type=Path, help="the environment's python")
    args = parser.parse_args(argv)

    def say(topic: str, message: str) -> None:
        print(f"  {topic:<12} {message}", flush=True)

    gpu = nvidia_gpu()
    if gpu is None or not gpu.usable:
        print("error: no NVIDIA GPU (nvidia-smi " + ("not found)" if gpu is None else f"failed: {gpu.error})"),
              file=sys.stderr)
        return 1
    packages, why = for_gpu(gpu)
    if packages is None:
        print(f"error: {why}", file=sys.stderr)
        return 1
    version = subprocess.run([str(args.python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, env=child_env()).stdout.strip()
    ok, why = install_pycuda(args.python, version, packages, say)
    if not ok:
        print(f"error: {why}", file=sys.stderr)
        return 1
    say("GPU", f"pycuda ready for CUDA {packages.cuda[0]}.{packages.cuda[1]}; TensorRT would be: "
               f"pip install {packages.tensorrt}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
