"""Graph preparation runs in a child process: the caller never imports onnxsim nor holds the GIL for it, errors
come back as the same one-line ModelError, and the child's interpreter is found even when the host (OBS) is not
Python."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from obs_rvm import graph_process
from obs_rvm.errors import ModelError
from obs_rvm.graph import GraphSpec, Variant, prepare
from obs_rvm.models import ModelFile


def test_the_caller_never_runs_onnxsim(tmp_path):
    """An in-process build imports onnxsim and holds the GIL for seconds: inside OBS, every frame would wait."""
    code = textwrap.dedent("""
        import sys
        from obs_rvm.graph import GraphSpec, Variant, prepare
        from obs_rvm.models import resolve_model
        graph = prepare(resolve_model(None), GraphSpec(80, 48, 0.5, Variant.BLUR))
        print(graph.inputs["frame"][0], "onnxsim" in sys.modules)
    """)
    env = {**os.environ, "OBS_RVM_CACHE_DIR": str(tmp_path / "cache")}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["(48,", "80,", "4)", "False"]
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
