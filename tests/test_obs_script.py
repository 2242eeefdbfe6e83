"""How obs_script.py finds the project's dependencies before it can import them (the installer's contract):
OBS_RVM_SITE_PACKAGES, then environment.json, then the package's own site-packages, then a checkout's .venv."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from obs_rvm import obs_script
from obs_rvm.obs_script import config_file, find_environment

REPO = Path(__file__).resolve().parent.parent
VERSION = (3, 11)


@pytest.fixture
def tree(tmp_path: Path) -> dict[str, Path]:
    """A checkout (with a .venv for Python 3.11), an installed package, two extra site-packages, a config home."""
    paths = {
        "checkout_script": tmp_path / "checkout" / "obs_rvm",
        "venv": tmp_path / "checkout" / ".venv" / "lib" / "python3.11" / "site-packages",
        "installed_script": tmp_path / "env" / "lib" / "python3.11" / "site-packages" / "obs_rvm",
        "a": tmp_path / "a",
        "b": tmp_path / "b",
        "config": tmp_path / "config",
    }
    for path in paths.values():
        path.mkdir(parents=True)
    return paths


def write_json(tree: dict[str, Path], content) -> Path:
    path = config_file({"XDG_CONFIG_HOME": str(tree["config"]), "APPDATA": str(tree["config"])})
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return path


def test_environment_variable_comes_first(tree):
    write_json(tree, {"site_packages": [str(tree["b"])]})
    env = {"OBS_RVM_SITE_PACKAGES": os.pathsep.join([str(tree["a"]), str(tree["b"])]),
           "XDG_CONFIG_HOME": str(tree["config"])}
    found, passed = find_environment(tree["checkout_script"], env, VERSION)
    assert found.origin == "OBS_RVM_SITE_PACKAGES" and found.site_packages == (tree["a"], tree["b"])
    assert passed == []


def test_installer_json_comes_second(tree):
    path = write_json(tree, {"site_packages": [str(tree["b"]), str(tree["a"] / "gone")], "source": str(tree["a"])})
    env = {"OBS_RVM_SITE_PACKAGES": str(tree["a"] / "missing"), "XDG_CONFIG_HOME": str(tree["config"])}
    found, passed = find_environment(tree["checkout_script"], env, VERSION)
    assert found.origin == str(path) and found.site_packages == (tree["b"],) and found.source == tree["a"]
    assert passed == [f"OBS_RVM_SITE_PACKAGES={tree['a'] / 'missing'} (no such folder)"]


@pytest.mark.parametrize("content", ["{not json", {"site_packages": "not a list of folders"}, ["a", "list"]])
def test_a_broken_json_is_passed_over_and_said_why(tree, content):
    path = write_json(tree, content)
    found, passed = find_environment(tree["checkout_script"], {"XDG_CONFIG_HOME": str(tree["config"])}, VERSION)
    assert found.site_packages == (tree["venv"],)  # fell through to the checkout's .venv
    assert len(passed) == 1 and passed[0].startswith(str(path))


def test_installed_package_uses_its_own_site_packages(tree):
    found, _ = find_environment(tree["installed_script"], {"XDG_CONFIG_HOME": str(tree["config"])}, VERSION)
    assert found.origin == "the package's own environment"
    assert found.site_packages == (tree["installed_script"].parent,)


def test_checkout_venv_last_and_only_for_the_python_obs_runs(tree):
    env = {"XDG_CONFIG_HOME": str(tree["config"])}
    found, passed = find_environment(tree["checkout_script"], env, VERSION)
    assert found.site_packages == (tree["venv"],) and found.origin.endswith(".venv")
    assert passed == [f"{config_file(env)} (not found)"]
    found, passed = find_environment(tree["checkout_script"], env, (3, 12))
    assert found is None
    assert passed[-1].endswith("(not made with Python 3.12, which OBS runs)")


def test_default_config_location(monkeypatch):
    home = Path.home()
    if os.name == "nt":
        assert config_file({"APPDATA": "C:\\Users\\u\\AppData\\Roaming"}).parts[-2:] == ("obs-rvm", "environment.json")
    else:
        assert config_file({}) == home / ".config" / "obs-rvm" / "environment.json"
        assert config_file({"XDG_CONFIG_HOME": "/x"}) == Path("/x/obs-rvm/environment.json")


def test_importing_outside_obs_leaves_sys_path_alone():
    before = list(sys.path)
    importlib.reload(obs_script)
    assert sys.path == before
    assert obs_script._filter is not None and obs_script._MISSING == ""  # this test environment has everything


def test_without_dependencies_the_script_loads_and_says_what_to_run(tmp_path):
    """OBS's own Python with nothing installed: the module imports, and script_load logs one line."""
    base = Path(sys.base_prefix) / "bin" / f"python{sys.version_info[0]}.{sys.version_info[1]}"
    if not base.exists():
        pytest.skip(f"no base interpreter at {base}")
    package = tmp_path / "pkg" / "obs_rvm"  # a copy, so no .venv is beside it
    shutil.copytree(REPO / "obs_rvm", package, ignore=shutil.ignore_patterns("__pycache__"))
    probe = ("import sys, types; sys.modules['obspython'] = types.ModuleType('obspython'); "
             f"sys.path.append({str(package)!r}); import obs_script as s; "
             "print('MISSING=' + s._MISSING); s.script_load(None); print(s.script_description())")
    env = {"HOME": str(tmp_path), "XDG_CONFIG_HOME": str(tmp_path / "config"),
           "OBS_RVM_SITE_PACKAGES": str(tmp_path / "nowhere"), "PATH": os.environ.get("PATH", "")}
    # -I: no user site-packages, no PYTHONPATH: only what OBS's Python itself would have.
    result = subprocess.run([str(base), "-I", "-c", probe], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    missing = next(line for line in result.stdout.splitlines() if line.startswith("MISSING="))
    assert "No module named" in missing and "installer/install.sh" in missing and "Python 3." in missing
    assert "nowhere (no such folder)" in missing and ".venv (not found)" in missing
    logged = result.stdout + result.stderr
    assert logged.count("AI Background is not available") == 3  # the variable, the log line, the description
