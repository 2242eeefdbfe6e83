"""The Python side of the installation: the interpreter OBS embeds, the virtual environment, pip."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections import deque
from pathlib import Path

from .. import __version__
from ..errors import SetupError

IMPORT_CHECK = "import obs_rvm, numpy, cv2, onnx, onnxruntime, platformdirs"
"""What must import in the environment for the filter to start (the GPU packages are the doctor's business)."""
SOURCE_FILES = ("pyproject.toml", "README.md", "LICENSE", "models/manifest.json")
CHILD_ENV_DROP = ("PYTHONPATH", "PYTHONHOME", "OBS_RVM_SOURCE", "OBS_RVM_MODEL", "OBS_RVM_MODEL_DIR",
                  "OBS_RVM_CACHE_DIR", "VIRTUAL_ENV")
"""The environment's programs must see the folders OBS will see: OBS started from the desktop has none of these."""


def child_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in CHILD_ENV_DROP}


def run_logged(cmd: list[str], tail: int = 25) -> tuple[int, list[str]]:
    """Run a long step with its output shown (indented) as it comes; returns the exit code and the last lines."""
    last: deque[str] = deque(maxlen=tail)
    try:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=child_env())
    except OSError as e:
        return 127, [str(e)]
    assert proc.stdout is not None
    for line in proc.stdout:
        line = line.rstrip()
        last.append(line)
        print(f"      {line}", flush=True)
    return proc.wait(), list(last)


def python_version(python: Path) -> str | None:
    """'3.11' for a working interpreter, None for anything else."""
    try:
        out = subprocess.run([str(python), "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                             capture_output=True, text=True, timeout=60, env=child_env())
    except (OSError, subprocess.TimeoutExpired):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def imports_ok(python: Path, check: str = IMPORT_CHECK) -> tuple[bool, str]:
    """Whether the environment's packages load, and the last line of the error if not."""
    out = subprocess.run([str(python), "-c", check], capture_output=True, text=True, env=child_env())
    lines = out.stderr.strip().splitlines()
    return out.returncode == 0, lines[-1] if lines else ""


def find_python(version: str, given: str | None) -> Path:
    """The interpreter of the version OBS embeds: wheels built for another version cannot load inside OBS."""
    apt = f"sudo apt-get install python{version} python{version}-venv"
    if given:
        path = Path(given).expanduser()
        found = python_version(path)
        if found is None:
            raise SetupError(f"--python {given} is not a working Python interpreter")
        if found != version:
            raise SetupError(f"{given} is Python {found}, but OBS embeds Python {version}: packages built for {found} "
                             f"cannot load inside OBS. Use python{version} ({apt})")
        return path
    for candidate in (f"/usr/bin/python{version}", shutil.which(f"python{version}")):
        if candidate and python_version(Path(candidate)) == version:
            return Path(candidate)
    raise SetupError(f"OBS embeds Python {version}, but python{version} is not installed: {apt}")


def ensure_venv_support(python: Path, version: str, say) -> None:
    """Debian/Ubuntu ship venv's pip bootstrap separately (python3.X-venv): install it as root, else say how."""
    probe = [str(python), "-c", "import ensurepip, venv"]
    if subprocess.run(probe, capture_output=True, env=child_env()).returncode == 0:
        return
    package = f"python{version}-venv"
    if os.geteuid() == 0 and shutil.which("apt-get"):
        say("Python", f"installing {package} (needed to create virtual environments)")
        code, last = run_logged(["apt-get", "install", "-y", "-q", package])
        if code == 0 and subprocess.run(probe, capture_output=True, env=child_env()).returncode == 0:
            return
        raise SetupError(f"could not install {package} (apt-get said: {last[-1] if last else code}): "
                         f"install it yourself (apt-get install {package}) and run this again")
    raise SetupError(f"Python {version} cannot create virtual environments: sudo apt-get install {package}, "
                     f"then run this again")


def create_venv(python: Path, venv: Path, version: str) -> None:
    out = subprocess.run([str(python), "-m", "venv", str(venv)], capture_output=True, text=True, env=child_env())
    if out.returncode != 0:
        reason = (out.stderr or out.stdout).strip().splitlines()
        raise SetupError(f"could not create the environment {venv}: {reason[-1] if reason else out.returncode}; "
                         f"sudo apt-get install python{version}-venv may fix it")


def pip_install(venv: Path, target: str) -> tuple[bool, str]:
    """pip install into the environment, its output shown; returns success and pip's own reason for a failure."""
    code, last = run_logged([str(venv / "bin" / "python"), "-m", "pip", "install", "--disable-pip-version-check",
                             target])
    errors = [line.strip() for line in last if line.strip().startswith("ERROR")]
    return code == 0, errors[-1] if errors else (last[-1].strip() if last else "pip failed")


def source_stamp(src: Path, extra: str) -> str:
    """Identifies what pip would install: the package's files, its metadata and the extra chosen."""
    digest = hashlib.sha256(f"{__version__} {extra}".encode())
    files = sorted(p for p in (src / "obs_rvm").rglob("*") if p.is_file() and "__pycache__" not in p.parts)
    for path in files + [src / f for f in SOURCE_FILES if (src / f).is_file()]:
        digest.update(str(path.relative_to(src)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
