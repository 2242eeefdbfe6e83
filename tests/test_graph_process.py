"""Graph preparation runs in a child process: the caller never imports onnxsim nor holds the GIL for it, errors
come back as the same one-line ModelError, and the child's interpreter is found even when the host (OBS) is not
Python."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

from obs_rvm import graph_process
from obs_rvm.errors import Cancelled, ModelError
from obs_rvm.graph import GraphSpec, Variant, prepare
from obs_rvm.models import ModelFile, resolve_model


def test_the_caller_never_runs_onnxsim(tmp_path, monkeypatch):
    """An in-process build imports onnxsim and holds the GIL for seconds: inside OBS, every frame would wait. The
    caller does not even import onnx (protobuf's native code and ~12 MiB stay out of OBS)."""
    code = textwrap.dedent("""
        import sys
        from obs_rvm.graph import GraphSpec, Variant, prepare
        from obs_rvm.models import resolve_model
        graph = prepare(resolve_model(None), GraphSpec(80, 48, 0.5, Variant.BLUR))
        print(graph.inputs["frame"][0], "onnxsim" in sys.modules, "onnx" in sys.modules)
    """)
    env = {**os.environ, "OBS_RVM_CACHE_DIR": str(tmp_path / "cache")}
    monkeypatch.setenv("OBS_RVM_CACHE_DIR", env["OBS_RVM_CACHE_DIR"])
    resolve_model(None)  # a first start restores the bundled model (with onnx) once; OBS then finds it on disk
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["(48,", "80,", "4)", "False", "False"]
    assert list((tmp_path / "cache" / "graphs").glob("*.onnx")), "the child wrote the graph into the cache"


def test_a_model_error_in_the_child_is_the_same_one_line_error(tmp_path, monkeypatch):
    monkeypatch.setenv("OBS_RVM_CACHE_DIR", str(tmp_path / "cache"))
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"\x08\x07" + os.urandom(4096))
    model = ModelFile("broken", broken, "0" * 64)
    with pytest.raises(ModelError, match=r"^\S*broken\.onnx is not a readable ONNX model .*corrupt or truncated"):
        prepare(model, GraphSpec(64, 48, 0.5, Variant.TRANSPARENT))
    assert not list((tmp_path / "cache" / "graphs").glob("*.onnx")), "nothing half-written is left in the cache"


def test_the_child_interpreter_is_found_when_the_host_is_not_python(monkeypatch):
    monkeypatch.setattr(sys, "executable", "/usr/bin/obs")  # what the Python OBS embeds reports
    python = graph_process.python_executable()
    assert python and Path(python).name.startswith("python")
    out = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True, text=True,
                         check=True).stdout.split()
    assert tuple(map(int, out)) == sys.version_info[:2]


def _children_building() -> list[int]:
    """This process's children that run graph_process (the preparation in flight)."""
    me = os.getpid()
    found = []
    for proc in Path("/proc").iterdir():
        try:
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            if parent == me and b"obs_rvm.graph_process" in (proc / "cmdline").read_bytes():
                found.append(int(proc.name))
        except (OSError, ValueError, IndexError):
            continue
    return found


NEVER_ENDING_BUILD = """
import os, time
from pathlib import Path

from obs_rvm import graph_build
from obs_rvm.paths import atomic_write


def build_file(model_path, spec, out):
    # A build that goes on until it is ended: half a graph written (as a real one is, mid-write), then waiting.
    with atomic_write(Path(out)) as f:
        f.write(b"half a graph")
        f.flush()
        Path({started!r}).touch()
        while True:
            time.sleep(1)


graph_build.build_file = build_file
"""


@pytest.fixture
def never_ending_builds(tmp_path, monkeypatch) -> Path:
    """Graph children whose build writes half a file and then never ends (a sitecustomize on their PYTHONPATH
    replaces graph_build.build_file in them): a cancel is the only way they stop, whatever this machine's speed.
    Returns the file a child touches once it is mid-build."""
    hook, started = tmp_path / "hook", tmp_path / "started"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(NEVER_ENDING_BUILD.format(started=str(started)))
    environment = graph_process._child_environment

    def with_hook() -> dict[str, str]:
        env = environment()
        env["PYTHONPATH"] = os.pathsep.join([str(hook), env["PYTHONPATH"]])
        return env

    monkeypatch.setattr(graph_process, "_child_environment", with_hook)
    yield started
    for pid in _children_building():  # only after a failure: a child the cancel did not end
        os.kill(pid, signal.SIGKILL)


def test_a_cancelled_build_ends_its_child_and_leaves_nothing(tmp_path, monkeypatch, never_ending_builds):
    """A filter removed (or OBS exiting) mid-preparation must not wait for a graph nobody will use: the child is
    ended (its half-written file removed) and prepare raises Cancelled."""
    monkeypatch.setenv("OBS_RVM_CACHE_DIR", str(tmp_path / "cache"))
    cancel = threading.Event()
    failure: list[BaseException] = []

    def build() -> None:
        try:
            prepare(resolve_model(None), GraphSpec(96, 64, 0.5, Variant.BLUR), cancel)
        except BaseException as e:
            failure.append(e)

    thread = threading.Thread(target=build, daemon=True)
    thread.start()
    deadline = time.monotonic() + 300  # waits for the child to start, however slowly; the build itself never ends
    while not never_ending_builds.exists() and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert never_ending_builds.exists(), f"the child did not start building: {failure}"
    assert len(_children_building()) == 1, "the build runs in a child process"
    assert list((tmp_path / "cache" / "graphs").glob("*.partial")), "the child is writing the graph"
    cancel.set()
    thread.join(graph_process.POLL_S + graph_process.GRACE_S + 30)
    assert not thread.is_alive(), "the cancel did not end the build"
    assert failure and isinstance(failure[0], Cancelled), failure
    assert not _children_building(), "the child was ended and reaped"
    assert not list((tmp_path / "cache" / "graphs").glob("*")), "no graph, no half-written file"
