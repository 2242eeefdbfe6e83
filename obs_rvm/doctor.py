"""`obs-rvm doctor`: one screen that says whether the OBS filter can work here, and the command that fixes what not.

Each line is a check with a status: `ok`, `FAIL` (the filter cannot work, or cannot use the GPU it has: exit code 1),
`warn` (works, but something is worth knowing) or `--` (not applicable here).
"""

from __future__ import annotations

import importlib
import importlib.metadata
import logging
import os
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from . import __version__
from .environment import environment_file, read_environment
from .errors import ObsRvmError
from .install import hardware, obs, scenes, system
from .install.transaction import read_state

if TYPE_CHECKING:  # the engines need numpy, which the doctor must not (it reports a broken environment)
    from .engines import Probe

OK, FAIL, WARN, NA = "ok", "FAIL", "warn", "--"
MODULES = {"opencv-python": "cv2", "opencv-python-headless": "cv2", "pycuda": "pycuda.driver", "cuda-python": "cuda",
           "tensorrt-cu12": "tensorrt", "tensorrt-cu13": "tensorrt",
           "onnxruntime-ep-nv-tensorrt-rtx-cu12": "onnxruntime_ep_nv_tensorrt_rtx"}
"""Distribution name -> module to import, where they differ beyond '-' vs '_'."""


@dataclass(frozen=True)
class Check:
    status: str
    topic: str
    message: str
    fix: str = ""


def installer_command() -> str:
    """How to re-run the installer: the checkout it last ran from, when known."""
    return read_state().get("installer") or "installer/install.sh (in the obs-rvm source folder)"


def requirements(extra: str | None = None) -> list[str]:
    """The distributions obs-rvm depends on (its base set, or one extra), from its installed metadata."""
    try:
        requires = importlib.metadata.requires("obs-rvm") or []
    except importlib.metadata.PackageNotFoundError:
        return []
    names = []
    for req in requires:
        marker = re.search(r"extra\s*==\s*['\"]([\w-]+)['\"]", req)
        if (marker.group(1) if marker else None) == extra:
            names.append(re.match(r"[A-Za-z0-9_.\-]+", req).group(0))  # type: ignore[union-attr]
    return names


def import_check(dist: str) -> tuple[bool, str]:
    """Import the distribution's module for real: a wheel can be installed yet fail to load (missing libnvinfer,
    a libcuda the driver does not provide), and only the import says so."""
    module = MODULES.get(dist, dist.lower().replace("-", "_"))
    try:
        importlib.import_module(module)
    except Exception as e:  # ImportError, OSError from a shared library, anything a package's __init__ raises
        return False, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
    try:
        return True, importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return True, "installed"


def check_obs() -> Iterator[Check]:
    if not sys.platform.startswith("linux"):
        here = f"{sys.version_info[0]}.{sys.version_info[1]}"
        yield Check(NA, "OBS", f"found automatically on Linux only: in OBS, Tools > Scripts > Python Settings must "
                               f"point at a Python {here} install (the environment's version)")
        yield from check_environment(None)
        return
    try:
        found = obs.find_obs()
    except ObsRvmError as e:
        yield Check(FAIL, "OBS", str(e).split(": ", 1)[0], str(e).split(": ", 1)[-1])
        return
    yield Check(OK, "OBS", found.describe())
    if obs.flatpak_obs():
        yield Check(WARN, "Flatpak", "a Flatpak OBS is installed too; only the one above is set up",
                    obs.FLATPAK_DIFFERS)
    yield from check_environment(found.python_version)


def check_environment(obs_python: str | None) -> Iterator[Check]:
    fix = installer_command()
    path = environment_file()
    try:
        record = read_environment()
    except ObsRvmError as e:
        yield Check(FAIL, "Environment", str(e), fix)
        return
    if not record:
        yield Check(FAIL, "Environment", f"{path} is missing: OBS cannot find obs-rvm's packages", fix)
        return
    version = record.get("python_version", "?")
    missing = [p for p in record.get("site_packages", []) if not Path(p).is_dir()]
    if missing:
        yield Check(FAIL, "Environment", f"{path} points at {', '.join(missing)}, which does not exist", fix)
    elif obs_python and version != obs_python:
        yield Check(FAIL, "Environment", f"built for Python {version}, but OBS now embeds Python {obs_python} "
                                         f"(OBS was updated?)", f"{fix} (rebuilds it for Python {obs_python})")
    else:
        yield Check(OK, "Environment", f"{record.get('python', '?')} (Python {version}, from {path})")
    here = f"{sys.version_info[0]}.{sys.version_info[1]}"
    if record.get("python") and Path(record["python"]).parent.parent != Path(sys.prefix):
        yield Check(WARN, "This shell", f"this obs-rvm runs in {sys.prefix} (Python {here}), not in the environment "
                                        f"OBS uses: the package checks below are for this one",
                    f"{record['python'].rsplit('/', 1)[0]}/obs-rvm doctor")
    script = record.get("script")
    if not script or not Path(script).is_file():
        yield Check(FAIL, "OBS script", f"{script or 'obs_rvm/obs_script.py'} is missing from the environment", fix)
        return
    loading = [c.stem for c in obs.collections() if script in scenes.script_paths(c)]
    if loading:
        yield Check(OK, "OBS script", f"loaded by scene collection {', '.join(repr(n) for n in loading)}")
    else:
        yield Check(WARN, "OBS script", f"{script} is not loaded by any scene collection yet",
                    f"in OBS: Tools > Scripts > + and pick it, or close OBS and run {fix.split(' (')[0]} --add-to-obs")


def check_packages() -> Iterator[Check]:
    names = requirements()
    if not names:
        yield Check(FAIL, "Packages", "obs-rvm's package metadata is missing (not installed with pip)",
                    installer_command())
        return
    for dist in names:
        ok, detail = import_check(dist)
        yield Check(OK if ok else FAIL, dist, detail, "" if ok else installer_command())


def check_gpu(facts: hardware.Facts | None = None, probe: Probe | None = None) -> Iterator[Check]:
    """The GPU and its driver, the packages the installer gives it (obs_rvm.install.hardware), what each gap needs,
    and what the filter will run on (the plan of `auto`). `facts` and `probe` describe another PC (tests)."""
    from .engines import plan

    if facts is None:
        facts = hardware.gather(f"{sys.version_info[0]}.{sys.version_info[1]}")
    choice = hardware.decide(facts)
    gaps = list(choice.gaps)
    fix = f"{installer_command()} (installs {choice.packages()} for this GPU)"
    missing = False
    if facts.nvidia is not None and not facts.nvidia.usable:
        yield Check(FAIL, "GPU", f"nvidia-smi is installed but fails: {facts.nvidia.error}", gaps.pop(0).fix)
    elif not choice.vendor:  # no GPU, or one without its driver (then the first gap says which)
        yield Check(WARN if gaps else NA, "GPU", f"{choice.gpu}: {choice.why}: the filter runs on the CPU",
                    gaps.pop(0).fix if gaps else "")
    elif choice.extra == "cpu":
        yield Check(WARN, "GPU", f"{choice.gpu}: {choice.why}: the filter runs on the CPU")
    else:
        yield Check(OK, "GPU", f"{choice.gpu}: {choice.title()} suits it")
        trt = choice.tensorrt
        for dist in [f"tensorrt-cu{trt.major}", "pycuda"] if trt else [hardware.WHEELS[e] for e in choice.extras]:
            ok, detail = import_check(dist)
            missing |= not ok
            yield Check(OK if ok else FAIL, dist, detail, "" if ok else fix)
    for gap in gaps:
        yield Check(WARN, gap.topic, gap.problem, gap.fix)
    try:
        candidates, skipped = plan("auto", probe=probe)
    except ObsRvmError as e:
        yield Check(FAIL, "Backend", str(e))
        return
    why = f" (not used: {'; '.join(skipped)})" if skipped else ""
    idle = bool(choice.vendor) and choice.extra != "cpu" and not candidates[0].gpu
    if idle:  # the first thing to fix: a missing wheel, else the first gap
        fix = choice.gaps[0].fix if choice.gaps and not missing else fix
    yield Check(WARN if idle else OK, "Backend", f"the filter runs on {candidates[0].label()}{why}",
                fix if idle else "")


def check_several_cameras(probe: Probe | None = None) -> Iterator[Check]:
    """What to expect with the filter on several cameras: they take turns (turns.py), so the matte updates divide."""
    from .engines import plan

    try:
        first = plan("auto", probe=probe)[0][0]
    except ObsRvmError:
        return
    where = "the GPU" if first.gpu else "the CPU"
    yield Check(NA, "Cameras", f"several filters (one per camera) take turns on {where}: each gets about 1/N of the "
                               f"matte updates of one filter, the video stays at OBS's frame rate"
                               + ("" if first.gpu else " (2 cores, 640x480: ~14/s for one, ~6 each for two, "
                                                       "~2 each for three)"))


def check_model() -> Iterator[Check]:
    """Which model the filter will use and why: the same rule it follows (models.resolve_model), without a download."""
    from .graph_build import load_rvm
    from .models import catalog, default_model_name, resolve_model, unreachable

    if os.environ.get("OBS_RVM_MODEL"):
        yield Check(WARN, "Model", "OBS_RVM_MODEL is set in this shell; OBS started from the desktop does not see it")
    try:
        model = resolve_model(None, download=False)
        load_rvm(model.path)
    except ObsRvmError as e:
        yield Check(FAIL, "Model", str(e), f"{installer_command()} (or --model PATH for a file you downloaded)")
        return
    entries = catalog()
    if entries.get(model.name) and entries[model.name].bundled:
        official = entries[default_model_name()]
        offline = unreachable(official.url) if official.url else "no download address"
        fix = f"obs-rvm models download {official.name}"
        if offline:
            yield Check(WARN, "Model", f"the filter uses the bundled {model.name} (8-bit weights, GPL-3.0): the "
                                       f"official {official.name} is not downloaded and cannot be downloaded now "
                                       f"({offline})",
                        f"{fix} once this machine is online")
        else:
            yield Check(WARN, "Model", f"the filter downloads the official {official.name} when it first starts (its "
                                       f"release is reachable), keying with the bundled {model.name} if that fails",
                        f"{fix} (now, so the first start does not wait)")
        return
    official = any(e.sha256 == model.sha256 and not e.bundled for e in entries.values())
    how = "official release asset, sha256 verified" if official else "not an official release asset; loads as RVM"
    yield Check(OK, "Model", f"the filter uses {model.name}: {model.path} ({how})")


def check_caches(tensorrt: bool) -> Iterator[Check]:
    """TensorRT's pre-built engines, where the GPU is one TensorRT runs on."""
    from .paths import cache_dir

    engines = [p for p in cache_dir("engines").glob("*") if p.is_file()] if cache_dir("engines").is_dir() else []
    size = sum(p.stat().st_size for p in engines) / 1e6
    if not tensorrt:
        yield Check(NA, "Engines", "TensorRT engines are only built for NVIDIA GPUs that TensorRT runs on")
    elif engines:
        yield Check(OK, "Engines", f"{len(engines)} cached TensorRT engine file(s), {size:.0f} MB, in "
                                   f"{cache_dir('engines')}")
    else:
        yield Check(WARN, "Engines", "no TensorRT engine cached yet: the filter's first start builds one (minutes)",
                    "obs-rvm engine build --size 1280x720 --size 1920x1080")


def check_camera() -> Iterator[Check]:
    if not sys.platform.startswith("linux"):
        yield Check(NA, "Camera", "OBS's virtual camera needs no kernel module outside Linux")
        return
    loop = system.loopback()
    usable = loop.loaded and not loop.fix()
    yield Check(OK if usable else WARN, "Camera", loop.state() + ("" if usable else " (needed only for OBS's virtual "
                                                                    "camera)"), loop.fix())


def run_checks() -> list[Check]:
    checks = [*check_obs(), *check_packages()]
    facts = hardware.gather(f"{sys.version_info[0]}.{sys.version_info[1]}")
    checks += [*check_gpu(facts), *check_several_cameras(), *check_model(),
               *check_caches(hardware.decide(facts).tensorrt is not None), *check_camera()]
    return checks


def render(checks: list[Check]) -> str:
    lines = [f"obs-rvm doctor (obs-rvm {__version__}, Python {sys.version.split()[0]} at {sys.prefix})"]
    for c in checks:
        lines.append(f" {c.status:<5} {c.topic:<13} {c.message}")
        if c.fix and c.status in (FAIL, WARN):
            lines.append(f" {'':<5} {'':<13} fix: {c.fix}")
    failed = [c for c in checks if c.status == FAIL]
    lines.append(f"{len(failed)} problem(s) to fix: the OBS filter cannot work fully until then." if failed
                 else "Everything the OBS filter needs is in place.")
    return "\n".join(lines)


def main() -> int:
    logging.getLogger("obs_rvm").setLevel(logging.ERROR)  # backend notes appear as the Backend line, not as log noise
    checks = run_checks()
    print(render(checks))
    return 1 if any(c.status == FAIL for c in checks) else 0


__all__ = ["Check", "main", "run_checks"]
