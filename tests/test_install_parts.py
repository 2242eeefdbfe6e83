"""The installer's parts on real inputs: the OBS installed here, a scene collection written by OBS 29.0.2, real
processes in /proc. The installer as a whole (install.sh in a fresh home) is in test_installer.py."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import platformdirs
import pytest

from obs_rvm.environment import config_dir, environment_file, read_environment, write_environment
from obs_rvm.errors import ModelError, SetupError
from obs_rvm.install import layout, obs, scenes
from obs_rvm.install.system import MODPROBE, Loopback
from obs_rvm.models import resolve_model

from install_helpers import COLLECTION, fake_obs_process
from paths import MODEL

needs_obs = pytest.mark.skipif(shutil.which("obs") is None, reason="OBS Studio is not installed")


@pytest.fixture
def home(tmp_path, monkeypatch) -> Path:
    """An empty home with no XDG overrides: the folders a new user has."""
    for var in ("XDG_DATA_HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def ours(path: str) -> bool:
    return layout.is_our_script(path)


# -- where things go --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("xdg", [False, True])
def test_layout_is_where_platformdirs_puts_it(home, monkeypatch, xdg):
    if xdg:
        for var, sub in (("XDG_DATA_HOME", "d"), ("XDG_CONFIG_HOME", "c"), ("XDG_CACHE_HOME", "k")):
            monkeypatch.setenv(var, str(home / sub))
    assert layout.data_dir() == Path(platformdirs.user_data_dir("obs-rvm"))
    assert layout.cache_root() == Path(platformdirs.user_cache_dir("obs-rvm"))
    assert config_dir() == Path(platformdirs.user_config_dir("obs-rvm"))
    assert layout.data_dir().is_relative_to(home) and environment_file().name == "environment.json"


def test_is_our_script_matches_only_installer_environments(home):
    venv = layout.venv_dir()
    assert ours(str(layout.script_path(venv, "3.11")))
    assert ours(str(layout.script_path(venv, "3.10")))
    assert not ours("/usr/share/obs/obs-plugins/frontend-tools/scripts/url-text.py")
    assert not ours(str(home / "src/obs-rvm/obs_rvm/obs_script.py"))  # a source checkout the user added by hand


# -- environment.json and the model it names ---------------------------------------------------------------------


def test_installer_model_replaces_the_default_model(home, monkeypatch):
    monkeypatch.delenv("OBS_RVM_MODEL", raising=False)
    monkeypatch.setenv("OBS_RVM_MODEL_DIR", str(home / "empty-models"))
    assert resolve_model(None, download=False).name == "mobilenetv3-web", "nothing downloaded: the bundled model"
    assert write_environment({"site_packages": [], "model": str(MODEL)})
    assert not write_environment({"site_packages": [], "model": str(MODEL)}), "unchanged content is not rewritten"
    assert resolve_model(None, download=False).path == MODEL
    assert resolve_model("mobilenetv3", download=False).path == MODEL  # the default's own name too
    with pytest.raises(ModelError, match="not downloaded yet"):
        resolve_model("resnet50", download=False)  # another catalog name means that asset
    write_environment({"site_packages": [], "model": str(home / "gone.onnx")})
    with pytest.raises(ModelError, match=r"gone\.onnx.*environment\.json.*install\.sh"):
        resolve_model(None, download=False)


def test_damaged_environment_file_is_reported_with_the_fix(home):
    environment_file().parent.mkdir(parents=True)
    environment_file().write_text("{not json")
    with pytest.raises(SetupError, match=r"environment\.json cannot be read.*install\.sh"):
        read_environment()
    environment_file().write_text('{"site_packages": "not a list"}')
    with pytest.raises(SetupError, match="not an obs-rvm environment file"):
        read_environment()


# -- OBS on this machine -----------------------------------------------------------------------------------------


def ldd_python(lib: Path) -> str:
    out = subprocess.run(["ldd", str(lib)], capture_output=True, text=True).stdout
    return next(line.split("libpython", 1)[1].split(".so", 1)[0] for line in out.splitlines() if "libpython" in line)


@needs_obs
def test_finds_the_installed_obs_and_the_python_it_embeds():
    found = obs.find_obs()
    assert found.binary == Path(shutil.which("obs"))
    assert found.python_version == ldd_python(found.scripting)
    assert found.scripting.name.startswith(("libobs-scripting.so", "_obspython.so", "frontend-tools.so"))
    version = subprocess.run(["obs", "--version"], capture_output=True, text=True).stdout
    assert found.version in version
    if subprocess.run(["dpkg", "-S", str(found.binary)], capture_output=True).returncode == 0:
        assert found.origin.startswith(("distribution package obs-studio", "OBS Project PPA"))
    # An explicit install folder finds the same installation.
    assert obs.find_obs(str(found.binary.parent.parent)).python_version == found.python_version


def test_missing_obs_says_how_to_install_it(home, tmp_path, monkeypatch):
    with pytest.raises(SetupError, match=r"OBS not found at .*nowhere"):
        obs.find_obs(str(tmp_path / "nowhere"))
    monkeypatch.setenv("PATH", str(tmp_path))  # no `obs` on the PATH, and no usual place searched
    with pytest.raises(SetupError, match=r"OBS Studio is not installed: .*apt-get install obs-studio"):
        obs._search_binary(())


def test_flatpak_only_obs_is_explained(home, monkeypatch):
    monkeypatch.setenv("PATH", str(home))
    (home / ".local/share/flatpak/app" / obs.FLATPAK_ID).mkdir(parents=True)
    assert obs.flatpak_obs() == home / ".local/share/flatpak/app" / obs.FLATPAK_ID
    with pytest.raises(SetupError, match=r"only the Flatpak OBS.*runtime.*\.var/app.*NVIDIA"):
        obs._search_binary(())


def test_obs_without_python_scripting_is_refused(tmp_path):
    (tmp_path / "bin").mkdir()
    shutil.copy("/bin/true", tmp_path / "bin" / "obs")
    with pytest.raises(SetupError, match="no scripting library"):
        obs.find_obs(str(tmp_path))
    (tmp_path / "lib").mkdir()
    shutil.copy("/bin/true", tmp_path / "lib" / "libobs-scripting.so.1")  # links libc only
    with pytest.raises(SetupError, match="built without Python scripting"):
        obs.find_obs(str(tmp_path))


def test_current_scene_collection_from_obs_settings(home):
    config = obs.config_dir()
    with pytest.raises(SetupError, match="start OBS once, close it"):
        obs.find_collection()
    (config / "basic" / "scenes").mkdir(parents=True)
    shutil.copy(COLLECTION, config / "basic" / "scenes" / "Streaming_Setup.json")
    (config / "global.ini").write_text("[General]\nFirstRun=true\n\n[Basic]\nProfile=Untitled\n"
                                       "SceneCollection=Streaming Setup\nSceneCollectionFile=Streaming_Setup\n")
    assert obs.find_collection() == config / "basic" / "scenes" / "Streaming_Setup.json"
    assert obs.find_collection("Streaming Setup") == obs.find_collection()  # by the name shown in OBS
    with pytest.raises(SetupError, match="no scene collection named 'Other'.*'Streaming Setup'"):
        obs.find_collection("Other")


def test_running_obs_is_found_only_for_its_own_settings(home, tmp_path):
    other = tmp_path / "someone-else"
    proc = fake_obs_process(tmp_path, home)
    try:
        assert proc.pid in obs.running_obs()
        assert proc.pid not in obs.running_obs(other / ".config" / "obs-studio")
    finally:
        proc.kill()
        proc.wait()
    assert proc.pid not in obs.running_obs()


# -- scene collections -------------------------------------------------------------------------------------------


def without_script(data: dict, script: Path) -> dict:
    copy = json.loads(json.dumps(data))
    copy["modules"]["scripts-tool"] = [e for e in copy["modules"]["scripts-tool"] if e["path"] != str(script)]
    return copy


def test_adding_the_script_keeps_every_other_setting(home, tmp_path):
    file = tmp_path / "Streaming_Setup.json"
    shutil.copy(COLLECTION, file)
    original = json.loads(COLLECTION.read_text())
    script = layout.script_path(layout.venv_dir(), "3.11")

    edit = scenes.add_script(file, script, ours)
    assert edit.action == "added" and edit.created == ()
    data = json.loads(file.read_text())
    assert data["modules"]["scripts-tool"][-1] == {"path": str(script), "settings": {}}
    assert data["modules"]["scripts-tool"][0]["settings"] == {"interval": 45, "url": "http://127.0.0.1:9/now"}
    assert without_script(data, script) == original  # every value, float and non-ASCII string included
    assert list(data) == list(original), "key order kept"
    assert "\n" not in file.read_text() and "ünïcode" in file.read_text(), "OBS's compact UTF-8 layout kept"
    assert edit.backup.read_bytes() == COLLECTION.read_bytes()

    assert scenes.add_script(file, script, ours).action == "unchanged"
    assert scenes.backups(file) == [edit.backup], "an unchanged file gets no new backup"

    removed = scenes.remove_scripts(file, ours)
    assert removed.action == "removed" and json.loads(file.read_text()) == original
    assert scenes.remove_scripts(file, ours).action == "absent"


def test_script_of_an_older_environment_is_repointed_with_its_settings(home, tmp_path):
    file = tmp_path / "c.json"
    data = json.loads(COLLECTION.read_text())
    old = layout.script_path(layout.venv_dir(), "3.10")
    data["modules"]["scripts-tool"] += [{"path": str(old), "settings": {"quality": "high"}},
                                        {"path": str(old), "settings": {}}]
    file.write_text(json.dumps(data, indent=4))
    new = layout.script_path(layout.venv_dir(), "3.11")
    assert scenes.add_script(file, new, ours).action == "updated"
    scripts = json.loads(file.read_text())["modules"]["scripts-tool"]
    assert scripts[1:] == [{"path": str(new), "settings": {"quality": "high"}}], "one entry, settings kept"
    assert scripts[0]["path"].endswith("url-text.py")
    assert file.read_text().startswith("{\n    "), "an indented file stays indented"


def test_containers_the_installer_created_go_on_removal(home, tmp_path):
    file = tmp_path / "bare.json"
    original = {"name": "Bare", "sources": [], "scene_order": []}
    file.write_text(json.dumps(original))
    script = layout.script_path(layout.venv_dir(), "3.11")
    edit = scenes.add_script(file, script, ours)
    assert edit.created == ("modules", "scripts-tool")
    assert json.loads(file.read_text())["modules"] == {"scripts-tool": [{"path": str(script), "settings": {}}]}
    scenes.remove_scripts(file, ours, edit.created)
    assert json.loads(file.read_text()) == original


def test_unreadable_collection_is_reported_and_left_alone(tmp_path):
    file = tmp_path / "broken.json"
    file.write_text('{"modules": {"scripts-tool": [')
    with pytest.raises(SetupError, match="not valid JSON.*\\.bak"):
        scenes.add_script(file, tmp_path / "obs_script.py", ours)
    assert file.read_text() == '{"modules": {"scripts-tool": [' and scenes.backups(file) == []


# -- the engine pre-build the installer runs with a GPU -----------------------------------------------------------


def test_engine_build_without_a_gpu_exits_3_with_the_reason():
    """The installer's contract with `obs-rvm engine build`: exit code 3 and a last line saying why means "no GPU
    engine to build here" (skip), anything else non-zero is a failed build."""
    from obs_rvm.engines.prebuild import EXIT_NO_GPU, unavailable

    if not unavailable():
        pytest.skip("TensorRT can run here: test_tensorrt_gpu.py covers building engines")
    result = subprocess.run([sys.executable, "-m", "obs_rvm.cli", "engine", "build", "--size", "1280x720", "--size",
                             "1920x1080"], capture_output=True, text=True, timeout=120)
    assert result.returncode == EXIT_NO_GPU == 3
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("obs-rvm: no TensorRT engine to build here: ") and "Traceback" not in result.stderr
    assert any(reason in last for reason in unavailable())


# -- the virtual camera ------------------------------------------------------------------------------------------


def test_virtual_camera_advice_names_the_exact_command():
    assert Loopback(loaded=False, available=False).fix().startswith("sudo apt-get install v4l2loopback-dkms")
    assert Loopback(loaded=False, available=False).fix().endswith(MODPROBE)
    assert Loopback(loaded=False, available=True).fix() == MODPROBE
    assert 'card_label="OBS Virtual Camera" exclusive_caps=1' in MODPROBE
    ready = Loopback(loaded=True, available=True, devices=["/dev/video10 (OBS Virtual Camera)"], exclusive_caps="Y")
    assert ready.fix() == "" and "/dev/video10" in ready.state()
    assert "modprobe -r v4l2loopback" in Loopback(loaded=True, available=True, exclusive_caps="N").fix()
