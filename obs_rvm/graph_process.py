"""Build a prepared graph in a child Python process.

Preparation (onnx, onnxsim, a probe run of onnxruntime) holds the GIL for seconds at a time and leaves hundreds of
MiB of freed-but-kept heap behind. Inside OBS both hurt: every Python callback OBS makes (video_render of every
filter included) waits for the GIL, and an evening of settings changes would grow OBS's memory by gigabytes. A child
process takes both away: OBS's threads keep the GIL, and the child's memory goes back to the system when it exits.
The CLI and the camera use the same path, so every front end prepares graphs the same way.

    python -m obs_rvm.graph_process MODEL.onnx SPEC_JSON OUT.onnx
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

from .errors import Cancelled, ModelError

log = logging.getLogger("obs_rvm")

MODEL_ERROR = 3
"""Exit status of a child that failed with a ModelError (its message is the last line of stderr)."""
POLL_S = 0.1
"""How often a waiting parent looks at its cancel event."""
GRACE_S = 2.0
"""How long a cancelled child may take to clean up (its SIGTERM handler removes a half-written file) before SIGKILL."""


def python_executable() -> str | None:
    """A Python interpreter of this very version, to run the child with.

    Inside OBS `sys.executable` is OBS itself (or empty); the interpreter OBS embeds lives beside its library.
    """
    version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    candidates = [sys.executable] if Path(sys.executable or "").name.lower().startswith("python") else []
    for prefix in dict.fromkeys((sys.prefix, sys.base_prefix, sys.exec_prefix)):
        base = Path(prefix)
        candidates += [str(base / "python.exe"), str(base / "bin" / f"python{version}"), str(base / "bin" / "python3")]
    candidates.append(shutil.which(f"python{version}") or "")
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return candidate
    return None


def _child_environment() -> dict[str, str]:
    """This process's environment, with its sys.path (OBS's script added the project's site-packages at run time)."""
    env = dict(os.environ)
    path = [p for p in sys.path if p and Path(p).exists()]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(path))
    env.pop("PYTHONHOME", None)
    return env


def build_in_child(model_path: Path, spec_fields: dict, out: Path, cancel: threading.Event | None = None) -> None:
    """Build the graph for `spec_fields` (GraphSpec as JSON) into `out` in a child process; ModelError on failure.

    Setting `cancel` ends the child and raises Cancelled: a filter removed or OBS exiting mid-preparation must not
    wait seconds for a graph nobody will use (OBS's exit waits for the thread that called this).
    """
    python = python_executable()
    if python is None:  # no interpreter to be found: build here, slower for the caller's other threads
        log.warning("no Python interpreter found to prepare the model in a separate process; preparing it in OBS")
        _build(model_path, spec_fields, out)
        return
    child = subprocess.Popen([python, "-m", __name__, str(model_path), json.dumps(spec_fields), str(out)],
                             env=_child_environment(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, text=True, errors="replace")
    stderr = _wait(child, cancel)
    if child.returncode == 0:
        return
    lines = [line for line in stderr.strip().splitlines() if line.strip()]
    last = lines[-1] if lines else f"exit status {child.returncode}"
    if child.returncode == MODEL_ERROR:
        raise ModelError(last)
    raise ModelError(f"preparing the model failed ({python}): {last}")


def _wait(child: subprocess.Popen, cancel: threading.Event | None) -> str:
    """The child's stderr once it exits; ends it and raises Cancelled as soon as `cancel` is set."""
    while True:
        try:
            return child.communicate(timeout=POLL_S)[1]
        except subprocess.TimeoutExpired:
            if cancel is None or not cancel.is_set():
                continue
        child.terminate()
        try:
            child.communicate(timeout=GRACE_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
        raise Cancelled("model preparation cancelled")


def _build(model_path: Path, spec_fields: dict, out: Path) -> None:
    from .graph import GraphSpec, Variant
    from .graph_build import build_file

    spec = GraphSpec(**{**spec_fields, "variant": Variant(spec_fields["variant"])})
    build_file(model_path, spec, out)


def _exit_on_sigterm(signum, frame) -> None:
    raise SystemExit(128 + signum)  # unwinds atomic_write, which removes its half-written file


def main(argv: list[str]) -> int:
    model_path, spec_json, out = argv
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        _build(Path(model_path), json.loads(spec_json), Path(out))
    except ModelError as e:
        print(str(e).replace("\n", " "), file=sys.stderr)
        return MODEL_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
