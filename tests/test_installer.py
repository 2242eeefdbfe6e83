"""installer/install.sh as a user runs it: a fresh home, the OBS installed on this machine, real pip, real files.

Installing takes a while, so one installation (`installed`) serves most tests, and the --add-to-obs/--uninstall
flow (`added`) has its own. The installations need this machine's OBS (`obs_studio`) and pip's package index
(conftest's `pypi`): without them those tests skip and say why, and the tests about OBS missing, or about what fails
before anything is installed, still run. For the OBS end-to-end check from the installed layout, `installed.script` and
`installed.site` are the script path and site-packages to hand to the OBS harness (OBS started with
HOME=installed.home, so the script finds environment.json and the installer's model there).
"""

from __future__ import annotations

import json
import os
import re
import select
import shutil
import signal
import subprocess
import time
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest

from obs_rvm.errors import SetupError
from obs_rvm.install import obs, scenes
from obs_rvm.matting import MattingSession, SessionOptions

from install_helpers import COLLECTION, fake_obs_process, path_without
from paths import MODEL

SRC = Path(__file__).resolve().parent.parent
REAL_HOME = Path.home()

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def obs_studio() -> obs.ObsInstall:
    """The OBS installed on this machine, which install.sh sets up; the tests that need one skip without it."""
    try:
        return obs.find_obs()
    except SetupError as e:
        pytest.skip(f"needs OBS Studio: {str(e).split(': ', 1)[0]}")


def user_env(home: Path, **extra: str) -> dict[str, str]:
    """What a user's shell has: PATH, locale, pip's own settings (and its cache, so tests do not download twice);
    none of the test process's OBS_RVM_* variables, no XDG overrides."""
    keep = ("PATH", "LANG", "LC_ALL", "TMPDIR", "http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "no_proxy")
    env = {k: v for k, v in os.environ.items() if k in keep or k.startswith("PIP_")}
    env.setdefault("PIP_CACHE_DIR", str(REAL_HOME / ".cache" / "pip"))
    env["HOME"] = str(home)
    env.update(extra)
    return env


def install(home: Path, *args: str, env: dict | None = None, src: Path = SRC) -> subprocess.CompletedProcess:
    result = subprocess.run([str(src / "installer" / "install.sh"), *args], capture_output=True, text=True,
                            env=env or user_env(home), timeout=1200)
    assert "Traceback" not in result.stdout + result.stderr, result.stdout + result.stderr
    return result


def assert_failed_cleanly(result: subprocess.CompletedProcess, pattern: str) -> None:
    """Exit code 1, the reason on one `install.sh: error:` line, then what was undone (or that nothing changed)."""
    assert result.returncode == 1, result.stdout + result.stderr
    lines = result.stderr.strip().splitlines()
    error = next(line for line in lines if line.startswith("install.sh: error: "))
    assert re.search(pattern, error), error
    assert lines[-1].startswith(("Nothing was changed.", "Undid this run's changes: ")), lines


def snapshot(root: Path, folders: bool = True) -> dict[str, tuple[int, int, int]]:
    """Every path under root with size, mtime and mode. onnxruntime rewrites its own usage database in
    ~/.cache/Microsoft on every import: that file is not ours, and is left out."""
    state = {}
    for path in root.rglob("*"):
        rel = path.relative_to(root)
        if rel.parts[:2] == (".cache", "Microsoft") or (not folders and path.is_dir()):
            continue
        st = path.lstat()
        state[str(rel)] = (st.st_size, st.st_mtime_ns, st.st_mode)
    return state


def obs_settings(home: Path, collection: dict | None = None) -> Path:
    """An OBS settings folder as OBS 29 leaves it after a first start: global.ini naming the current collection, a
    small-canvas profile, and the scene collection."""
    config = home / ".config" / "obs-studio"
    (config / "basic" / "scenes").mkdir(parents=True)
    (config / "basic" / "profiles" / "Untitled").mkdir(parents=True)
    (config / "global.ini").write_text("[General]\nFirstRun=true\n\n[Basic]\nProfile=Untitled\nProfileDir=Untitled\n"
                                       "SceneCollection=Streaming Setup\nSceneCollectionFile=Streaming_Setup\n")
    (config / "basic" / "profiles" / "Untitled" / "basic.ini").write_text(
        "[General]\nName=Untitled\n\n[Video]\nBaseCX=320\nBaseCY=180\nOutputCX=320\nOutputCY=180\nFPSCommon=10\n")
    file = config / "basic" / "scenes" / "Streaming_Setup.json"
    file.write_text(json.dumps(collection, separators=(",", ":")) if collection else COLLECTION.read_text())
    return file


def layout_of(home: Path, python_version: str) -> SimpleNamespace:
    venv = home / ".local" / "share" / "obs-rvm" / "venv"
    site = venv / "lib" / f"python{python_version}" / "site-packages"
    return SimpleNamespace(home=home, venv=venv, site=site, script=site / "obs_rvm" / "obs_script.py",
                           envfile=home / ".config" / "obs-rvm" / "environment.json", python_version=python_version)


@pytest.fixture(scope="module")
def installed(tmp_path_factory, obs_studio, pypi) -> SimpleNamespace:
    """One installation with the test model given as a file (no network for model downloads here)."""
    home = tmp_path_factory.mktemp("installed")
    obs_settings(home)
    result = install(home, "--model", str(MODEL))
    assert result.returncode == 0, result.stdout + result.stderr
    return SimpleNamespace(**vars(layout_of(home, obs_studio.python_version)), result=result)


def test_install_builds_an_environment_for_obs_python(installed):
    out = installed.result.stdout
    assert f"Python {installed.python_version}" in out and "Done: obs-rvm is set up" in out
    version = subprocess.run([str(installed.venv / "bin" / "python"), "-c", "import sys; print(sys.version[:4])"],
                             capture_output=True, text=True).stdout
    assert version.startswith(installed.python_version)
    assert (installed.site / "obs_rvm" / "__init__.py").is_file()
    assert not (installed.site / "obs_rvm" / "__init__.py").is_symlink(), "installed, not linked to the checkout"
    record = json.loads(installed.envfile.read_text())
    assert record["site_packages"] == [str(installed.site)]
    assert record["python_version"] == installed.python_version
    model = Path(record["model"])
    assert model.parent == installed.home / ".local/share/obs-rvm/models/custom", "not filed as an official asset"
    assert model.read_bytes() == MODEL.read_bytes()
    link = installed.home / ".local" / "bin" / "obs-rvm"
    assert subprocess.run([str(link), "--version"], capture_output=True, text=True).stdout.startswith("obs-rvm ")
    assert "v4l2loopback" in out and 'card_label="OBS Virtual Camera"' in out
    assert "in OBS: Tools > Scripts > +" in out and str(installed.script) in out


def test_installed_packages_work_the_way_obs_loads_them(installed):
    """OBS's embedded Python adds the site-packages from environment.json (no venv, no OBS_RVM_MODEL): the same
    interpreter version doing the same thing keys a frame with the installer's model."""
    code = (
        "import json, os, site, sys\n"
        "record = json.load(open(os.path.expanduser('~/.config/obs-rvm/environment.json')))\n"
        "[site.addsitedir(p) for p in record['site_packages']]\n"
        "import numpy as np\n"
        "from obs_rvm.matting import MattingSession, SessionOptions\n"
        "session = MattingSession(SessionOptions())\n"
        "frame = np.random.default_rng(7).integers(0, 256, (48, 64, 4), dtype=np.uint8)\n"
        "out = session.process(frame, 0.0)\n"
        "print(session.model.path, out.shape, out.dtype, session.status.backend.split()[0], out.sum())\n"
    )
    system_python = f"/usr/bin/python{installed.python_version}"
    result = subprocess.run([system_python, "-s", "-c", code], capture_output=True, text=True, timeout=300,
                            env={"HOME": str(installed.home), "PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stderr
    path, *rest = result.stdout.split()
    assert path == json.loads(installed.envfile.read_text())["model"]
    assert rest[:5] == ["(48,", "64,", "4)", "uint8", "onnxruntime"]
    frame = np.random.default_rng(7).integers(0, 256, (48, 64, 4), dtype=np.uint8)
    expected = MattingSession(SessionOptions(model=str(MODEL))).process(frame, 0.0)
    assert int(rest[5]) == int(expected.sum(dtype=np.int64)), "same pixels as this checkout computes"


def test_obs_script_finds_the_installed_environment(installed):
    """The contract with obs_rvm/obs_script.py: run the installed script file the way OBS does (its own Python, no
    environment variables but HOME) and it picks environment.json and this site-packages."""
    if not installed.script.is_file():
        pytest.skip("obs_rvm/obs_script.py is not in this version (it lands with the obs-filter work)")
    code = ("import runpy, sys\n"
            "g = runpy.run_path(sys.argv[1])\n"
            "print(g['ENVIRONMENT'].origin)\n"
            "print(*g['ENVIRONMENT'].site_packages, sep='\\n')\n")
    result = subprocess.run([f"/usr/bin/python{installed.python_version}", "-s", "-c", code, str(installed.script)],
                            capture_output=True, text=True, timeout=120,
                            env={"HOME": str(installed.home), "PATH": os.environ["PATH"]})
    assert result.returncode == 0, result.stderr
    origin, *site_packages = result.stdout.split("\n")[:2]
    assert origin == str(installed.envfile) and site_packages == [str(installed.site)]


def test_second_run_changes_nothing(installed):
    before = snapshot(installed.home)
    again = install(installed.home, "--model", str(MODEL))
    assert again.returncode == 0, again.stdout + again.stderr
    for line in ("): kept", ": up to date", "already in place", "environment.json: up to date"):
        assert line in again.stdout, again.stdout
    assert snapshot(installed.home) == before


def test_rerun_repairs_a_damaged_environment_file(installed):
    good = installed.envfile.read_text()
    installed.envfile.write_text('{"site_packages": ')
    code, checks = doctor(installed.home)
    assert code == 1 and checks["Environment"][0] == "FAIL" and "install.sh" in checks["Environment"][2]
    result = install(installed.home)  # no --model: the installer still knows the model it set up
    assert result.returncode == 0, result.stdout + result.stderr
    assert "environment.json: updated" in result.stdout and installed.envfile.read_text() == good


def test_failed_model_download_changes_nothing(installed):
    """No network for the official model: the run stops with the reason and the way out, and the working
    installation (environment, model, environment.json) stays exactly as it was."""
    before = snapshot(installed.home, folders=False)
    dead = "http://127.0.0.1:9"
    result = install(installed.home, "--model", "mobilenetv3",
                     env=user_env(installed.home, https_proxy=dead, HTTPS_PROXY=dead, no_proxy="", NO_PROXY=""))
    assert_failed_cleanly(result, r"could not download model 'mobilenetv3'.*--model PATH")
    assert snapshot(installed.home, folders=False) == before


def doctor(home: Path, env: dict | None = None) -> tuple[int, dict[str, tuple[str, str, str]]]:
    """Run `obs-rvm doctor` from ~/.local/bin; returns the exit code and {topic: (status, message, fix)}."""
    result = subprocess.run([str(home / ".local" / "bin" / "obs-rvm"), "doctor"], capture_output=True, text=True,
                            env=env or user_env(home), timeout=300)
    checks: dict[str, tuple[str, str, str]] = {}
    topic = ""
    for line in result.stdout.splitlines()[1:-1]:
        status, rest = line[1:7].strip(), line[7:]
        if status:
            topic, message = rest[:13].strip(), rest[14:]
            checks[topic] = (status, message, "")
        elif rest.strip().startswith("fix: "):
            checks[topic] = (*checks[topic][:2], rest.strip()[5:])
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    return result.returncode, checks


def test_doctor_reports_the_installation(installed):
    code, checks = doctor(installed.home)
    assert checks["OBS"][0] == "ok" and f"Python {installed.python_version}" in checks["OBS"][1]
    assert checks["Environment"][0] == "ok" and str(installed.venv / "bin" / "python") in checks["Environment"][1]
    for dist in ("numpy", "onnx", "onnxruntime", "onnxsim", "opencv-python", "platformdirs", "tqdm"):
        assert checks[dist][0] == "ok", checks[dist]
    assert checks["Model"][0] == "ok" and "rvm_mobilenetv3_tfjs_int8_dequant.onnx" in checks["Model"][1]
    assert "not an official release asset" in checks["Model"][1]
    assert checks["Backend"][0] == "ok"
    if shutil.which("nvidia-smi") is None:
        assert checks["GPU"][0] == "--" and checks["Engines"][0] == "--"
    if not Path("/sys/module/v4l2loopback").exists():
        status, _, fix = checks["Camera"]
        assert status == "warn" and 'card_label="OBS Virtual Camera" exclusive_caps=1' in fix
    # The OBS script arrives with the obs-filter work; until then the doctor must say it is missing, and only that.
    failing = {topic for topic, (status, _, _) in checks.items() if status == "FAIL"}
    assert failing == (set() if installed.script.is_file() else {"OBS script"})
    assert code == (1 if failing else 0)


def test_doctor_names_the_fix_for_each_broken_part(installed, tmp_path):
    config = tmp_path / "config"
    (config / "obs-rvm").mkdir(parents=True)
    shutil.copytree(installed.home / ".config" / "obs-studio", config / "obs-studio")
    record = json.loads(installed.envfile.read_text())
    record.update(python_version="3.10", model=str(tmp_path / "deleted.onnx"))
    (config / "obs-rvm" / "environment.json").write_text(json.dumps(record))
    code, checks = doctor(installed.home, user_env(installed.home, XDG_CONFIG_HOME=str(config)))
    assert code == 1
    status, message, fix = checks["Environment"]
    assert status == "FAIL" and "built for Python 3.10" in message and "OBS now embeds" in message
    assert fix.startswith(str(SRC / "installer" / "install.sh"))
    status, message, fix = checks["Model"]
    assert status == "FAIL" and "deleted.onnx" in message and "install.sh" in fix


@pytest.mark.obs
def test_filter_runs_from_the_installed_layout(installed, tmp_path):
    """End to end: real OBS loads the installed obs_script.py with nothing but the installer's environment.json
    (no test environment, no OBS_RVM_MODEL), and the filter keys a picture with the installer's model exactly as
    this checkout's pipeline does."""
    harness = pytest.importorskip("obs_harness", reason="the OBS harness lands with the obs-filter work")
    if not installed.script.is_file() or shutil.which("Xvfb") is None:
        pytest.skip("needs obs_rvm/obs_script.py in the installed package and Xvfb")
    from obs_rvm.obs.settings import rgb_to_obs_color

    from paths import ASTRONAUT

    blue = rgb_to_obs_color((0, 0, 255))
    config = harness.ObsConfig(
        script=installed.script, environment_json=json.loads(installed.envfile.read_text()),
        inputs=[harness.image_input("Person", ASTRONAUT, [harness.ai_filter("AI", background="color", color=blue)])],
        env={"OBS_RVM_MODEL": ""})  # the test process's own model override must not reach OBS
    frame = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGBA)
    log = _keys_like_the_pipeline(config, tmp_path, harness.reference(frame, background="color", color=blue))
    assert "AI Background is not available" not in log


# -- offline: the bundled model -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def installed_offline(tmp_path_factory, obs_studio, pypi) -> SimpleNamespace:
    """A first install with no model named and no way to download one (the release URL is conftest's closed port)."""
    home = tmp_path_factory.mktemp("offline")
    obs_settings(home)
    env = user_env(home, OBS_RVM_RELEASE_URL=os.environ["OBS_RVM_RELEASE_URL"])
    start = time.monotonic()
    result = install(home, env=env)
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"\noffline install: {time.monotonic() - start:.0f} s")
    return SimpleNamespace(**vars(layout_of(home, obs_studio.python_version)), result=result, env=env)


def test_offline_install_completes_with_the_bundled_model(installed_offline):
    out = installed_offline.result.stdout
    restored = installed_offline.home / ".cache" / "obs-rvm" / "models" / "rvm_mobilenetv3_tfjs_int8_dequant.onnx"
    assert re.search(rf"Model +mobilenetv3-web: {re.escape(str(restored))} \(bundled with obs-rvm", out), out
    assert "Warning: could not download model 'mobilenetv3'" in out
    assert "using the bundled model: run `obs-rvm models download mobilenetv3` for the official fp32 weights" in out
    assert restored.read_bytes() == MODEL.read_bytes(), "the installed wheel carries the bundle, restored losslessly"
    assert "model" not in json.loads(installed_offline.envfile.read_text()), "the default rule, not a pinned file"
    assert not list((installed_offline.home / ".local" / "share" / "obs-rvm" / "models").glob("*.onnx"))
    code, checks = doctor(installed_offline.home, installed_offline.env)
    assert code == 0, checks  # a warning: the filter works
    status, message, fix = checks["Model"]
    assert status == "warn" and "the filter uses the bundled mobilenetv3-web" in message, checks["Model"]
    assert "cannot be downloaded now" in message and fix.startswith("obs-rvm models download mobilenetv3")
    listing = subprocess.run([str(installed_offline.home / ".local" / "bin" / "obs-rvm"), "models"],
                             capture_output=True, text=True, env=installed_offline.env, timeout=120).stdout
    assert re.search(r"mobilenetv3-web .* present \(bundled\)", listing), listing


@pytest.mark.obs
def test_offline_filter_keys_with_the_bundled_model(installed_offline, tmp_path):
    """Real OBS with only the installer's environment.json, offline: the filter keys with the bundled model (the
    pixels of the pipeline with the shared model file) and logs the one line about it."""
    harness = pytest.importorskip("obs_harness")
    from obs_rvm.obs.settings import rgb_to_obs_color

    from paths import ASTRONAUT

    blue = rgb_to_obs_color((0, 0, 255))
    config = harness.ObsConfig(
        script=installed_offline.script, environment_json=json.loads(installed_offline.envfile.read_text()),
        inputs=[harness.image_input("Person", ASTRONAUT, [harness.ai_filter("AI", background="color", color=blue)])],
        env={"OBS_RVM_MODEL": "", "OBS_RVM_MODEL_DIR": "", "OBS_RVM_CACHE_DIR": ""})  # the user's own folders
    frame = cv2.cvtColor(cv2.imread(str(ASTRONAUT)), cv2.COLOR_BGR2RGBA)
    expected = harness.reference(frame, model=str(MODEL), background="color", color=blue)
    log = _keys_like_the_pipeline(config, tmp_path, expected)
    assert re.search(r"keying \d+x\d+ with .*, model mobilenetv3-web", log), log[-3000:]
    note = "using the bundled model: run `obs-rvm models download mobilenetv3` for the official fp32 weights"
    assert log.count(note) == 1, log[-3000:]


# -- bad cases: each a clear message, a non-zero exit, and nothing left behind -----------------------------------


def test_missing_obs(tmp_path):
    """--obs naming a folder without OBS, on a PATH without `obs` (as on a PC without OBS, whether or not this one
    has it): the reason and the way out, nothing changed."""
    home = tmp_path / "home"
    home.mkdir()
    env = user_env(home, PATH=path_without("obs", tmp_path / "path"))
    result = install(home, "--obs", str(tmp_path / "no-obs-here"), env=env)
    assert_failed_cleanly(result, r"OBS not found at .*no-obs-here: give the obs program or the folder")
    assert list(home.iterdir()) == []


def test_no_obs_installed(tmp_path):
    """A PC without OBS: the installer says how to install it and changes nothing. OBS is hidden from the PATH;
    where it is installed in a folder the installer searches whatever the PATH says, this cannot run."""
    found = [path for path in obs.OBS_SEARCH if Path(path).is_file() and os.access(path, os.X_OK)]
    if found:
        pytest.skip(f"OBS is installed at {found[0]}, where the installer looks whatever the PATH says")
    if obs.flatpak_obs():
        pytest.skip("the Flatpak OBS is installed here: the installer says that instead (test_install_parts.py)")
    home = tmp_path / "home"
    home.mkdir()
    result = install(home, env=user_env(home, PATH=path_without("obs", tmp_path / "path")))
    assert_failed_cleanly(result, r"OBS Studio is not installed: install OBS Studio \(Debian/Ubuntu: sudo apt-get "
                                  r"install obs-studio.*--obs PATH")
    assert list(home.iterdir()) == []


def fake_obs_prefix(root: Path, python_version: str, real: obs.ObsInstall) -> Path:
    """An OBS install folder whose scripting library links another Python: the real library (of `real`), with the
    libpython name in its dynamic section rewritten (same length), so ldd reports exactly what a different build
    would."""
    (root / "bin").mkdir(parents=True)
    (root / "bin" / "obs").write_text("#!/bin/sh\necho 'OBS Studio - 99.0.0 (linux)'\n")
    (root / "bin" / "obs").chmod(0o755)
    (root / "lib").mkdir()
    old = f"libpython{real.python_version}.so".encode()
    new = f"libpython{python_version}.so".encode()
    assert len(old) == len(new)
    data = real.scripting.read_bytes()
    assert old in data
    (root / "lib" / "libobs-scripting.so.1").write_bytes(data.replace(old, new))
    return root


def test_obs_embedding_a_python_that_is_not_installed(tmp_path, obs_studio):
    home = tmp_path / "home"
    home.mkdir()
    prefix = fake_obs_prefix(tmp_path / "obs", "3.99", obs_studio)
    result = install(home, "--obs", str(prefix))
    assert_failed_cleanly(result, r"OBS embeds Python 3\.99, but python3\.99 is not installed: "
                                  r"sudo apt-get install python3\.99 python3\.99-venv")
    real = obs_studio.python_version
    result = install(home, "--obs", str(prefix), "--python", f"/usr/bin/python{real}")
    assert_failed_cleanly(result, rf"python{real} is Python {real}, but OBS embeds Python 3\.99: packages built")
    assert list(home.iterdir()) == []


@pytest.mark.parametrize("where", ["proc", "under-a-file"])
def test_unwritable_folders(tmp_path, where, obs_studio):
    home = tmp_path / "home"
    home.mkdir()
    if where == "proc":
        env = user_env(home, XDG_DATA_HOME="/proc/obs-rvm-test")
        pattern = r"cannot write to /proc/obs-rvm-test/obs-rvm .*XDG_DATA_HOME"
    else:
        (home / "a-file").write_text("not a folder")
        env = user_env(home, XDG_CONFIG_HOME=str(home / "a-file" / "config"))
        pattern = r"cannot write to .*a-file/config/obs-rvm \(environment\.json\): Not a directory.*XDG_CONFIG_HOME"
    result = install(home, "--model", str(MODEL), env=env)
    assert_failed_cleanly(result, pattern)
    assert [p.name for p in home.iterdir()] == ([] if where == "proc" else ["a-file"]), "the data folder was undone"


def test_no_network_for_pip_undoes_the_new_environment(tmp_path, obs_studio):
    home = tmp_path / "home"
    home.mkdir()
    offline = {k: v for k, v in user_env(home).items() if not k.startswith("PIP_")}
    offline.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1", PIP_NO_CACHE_DIR="1")  # pip can reach nothing
    result = install(home, "--model", str(MODEL), env=offline)
    assert_failed_cleanly(result, r"pip could not install obs-rvm into .*Check the network")
    assert "Undid this run's changes" in result.stderr
    # pip asks `rustc --version` for its user agent, and a rustup shim on the PATH makes ~/.rustup: not ours.
    assert {p.name for p in home.iterdir()} <= {".rustup"}, "venv, data and config folders all removed"


def test_uninstall_leaves_obs_rvm_files_it_did_not_install(tmp_path):
    """A user of a source checkout or pip has models and caches in the same folders: without an installation made
    by the installer, --uninstall touches nothing."""
    home = tmp_path / "home"
    for path in (".local/share/obs-rvm/models/mine.onnx", ".cache/obs-rvm/graphs/g.onnx"):
        (home / path).parent.mkdir(parents=True)
        (home / path).write_bytes(b"not the installer's")
    before = snapshot(home)
    result = install(home, "--uninstall")
    assert result.returncode == 0 and "Nothing to remove" in result.stdout
    assert snapshot(home) == before


# -- --add-to-obs and --uninstall on a scene collection saved by OBS ----------------------------------------------


def source_with_script(dest: Path) -> Path:
    """This checkout, with obs_rvm/obs_script.py. Until the obs-filter work lands it is a placeholder that OBS can
    load (a script with a description): these tests are about where the installer puts it, not what it does."""
    shutil.copytree(SRC, dest, ignore=shutil.ignore_patterns(".venv", ".git", "__pycache__", "*.egg-info", "out",
                                                             ".pytest_cache", ".ruff_cache", "build", "dist"))
    script = dest / "obs_rvm" / "obs_script.py"
    if not script.exists():
        script.write_text('"""Placeholder for the OBS script in the installer tests."""\n\n\n'
                          'def script_description():\n    return "obs-rvm installer test placeholder"\n')
    return dest


@pytest.fixture(scope="module")
def added(tmp_path_factory, obs_studio, pypi) -> SimpleNamespace:
    """Installed with --add-to-obs into a scene collection that still lists the script of an environment built for
    an older Python (as after an OBS upgrade), with settings the user chose."""
    root = tmp_path_factory.mktemp("added")
    src = source_with_script(root / "src")
    home = root / "home"
    home.mkdir()
    version = obs_studio.python_version
    stale = layout_of(home, "3.9").script
    original = json.loads(COLLECTION.read_text())
    with_stale = json.loads(COLLECTION.read_text())
    with_stale["modules"]["scripts-tool"].append({"path": str(stale), "settings": {"quality": "high"}})
    file = obs_settings(home, with_stale)
    result = install(home, "--model", str(MODEL), "--add-to-obs", src=src)
    assert result.returncode == 0, result.stdout + result.stderr
    return SimpleNamespace(**vars(layout_of(home, version)), src=src, file=file, original=original,
                           with_stale=with_stale, result=result)


def test_add_to_obs_repoints_the_script_and_keeps_everything_else(added):
    assert "updated in scene collection 'Streaming_Setup'" in added.result.stdout
    assert "start OBS: the AI Background script loads with scene collection 'Streaming_Setup'" in added.result.stdout
    data = json.loads(added.file.read_text())
    expected = json.loads(json.dumps(added.with_stale))
    expected["modules"]["scripts-tool"][-1]["path"] = str(added.script)
    assert data == expected
    assert json.loads(scenes.backups(added.file)[0].read_text()) == added.with_stale
    assert json.loads(added.envfile.read_text())["script"] == str(added.script)


@pytest.mark.obs
def test_obs_loads_the_added_script(added, tmp_path):
    """Real OBS (under Xvfb) opens the edited collection, loads the script, and saves the collection back with the
    entry and every source's settings intact. It runs on a copy of the settings, so the other tests' files stay
    as the installer left them."""
    if shutil.which("Xvfb") is None:
        pytest.skip("Xvfb is not installed")
    config = tmp_path / "config"
    shutil.copytree(added.home / ".config", config)
    env = {**user_env(added.home), "XDG_CONFIG_HOME": str(config)}
    read_fd, write_fd = os.pipe()
    xvfb = subprocess.Popen(["Xvfb", "-displayfd", str(write_fd), "-screen", "0", "640x480x24", "-nolisten", "tcp"],
                            pass_fds=(write_fd,), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(write_fd)
    try:
        assert select.select([read_fd], [], [], 30)[0], "Xvfb did not start"
        display = os.read(read_fd, 16).decode().strip()
        log = tmp_path / "obs.log"
        with open(log, "w") as out:
            # --multi: no "OBS is already running" dialog when another OBS (any user, any settings) runs.
            proc = subprocess.Popen(["obs", "--multi", "--collection", "Streaming Setup"], stdout=out,
                                    stderr=subprocess.STDOUT, env={**env, "DISPLAY": f":{display}"})
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and proc.poll() is None and "obs_script.py" not in log.read_text():
            time.sleep(0.5)
        time.sleep(2)
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
    finally:
        if "proc" in locals() and proc.poll() is None:
            proc.kill()
        xvfb.kill()
        xvfb.wait()
        os.close(read_fd)
    text = log.read_text()
    assert "Loaded python script: obs_script.py" in text, text[-4000:]
    saved = json.loads((config / "obs-studio" / "basic" / "scenes" / "Streaming_Setup.json").read_text())
    assert {"path": str(added.script), "settings": {"quality": "high"}} in saved["modules"]["scripts-tool"]
    # Newer OBS saves more than OBS 29 wrote (30.2 and 32.2 add fields to scenes, scene items and filters): what
    # the installer promises is that every source, filter and value the user had comes back as it was.
    saved_sources = {s["name"]: s for s in saved["sources"]}
    for source in added.original["sources"]:
        name = source["name"]
        assert name in saved_sources, f"source {name!r} lost"
        assert_kept(source["settings"], saved_sources[name]["settings"], f"{name}: settings")
        assert_kept(source.get("filters", []), saved_sources[name].get("filters", []), f"{name}: filters")


def assert_kept(before, after, where: str) -> None:
    """`after` holds everything `before` held, unchanged: the same values, lists of the same length in the same
    order; objects may have gained keys (what a newer OBS adds when it saves)."""
    if isinstance(before, dict):
        assert isinstance(after, dict), f"{where}: {after!r} is not an object"
        for key, value in before.items():
            if key == "prev_ver":
                continue  # OBS's own record of the OBS version that last saved the filter, not a user setting
            assert key in after, f"{where}: {key!r} lost"
            assert_kept(value, after[key], f"{where}.{key}")
    elif isinstance(before, list):
        assert isinstance(after, list) and len(after) == len(before), f"{where}: {after!r} != {before!r}"
        for i, (a, b) in enumerate(zip(before, after)):
            assert_kept(a, b, f"{where}[{i}]")
    else:
        assert after == before, f"{where}: {after!r} != {before!r}"


def test_add_to_obs_refuses_while_obs_runs(added, tmp_path):
    before = snapshot(added.home, folders=False)
    proc = fake_obs_process(tmp_path, added.home)
    try:
        result = install(added.home, "--add-to-obs", src=added.src)
    finally:
        proc.kill()
        proc.wait()
    assert_failed_cleanly(result, rf"OBS is running \(process {proc.pid}\): close it first")
    assert snapshot(added.home, folders=False) == before


@pytest.fixture
def added_then_put_back(added, tmp_path) -> SimpleNamespace:
    """`added` for a test that takes the installation away: its home is put back as it was afterwards (same paths,
    same files, times and modes), so the other tests of `added` can run before or after it."""
    kept = tmp_path / "home-as-added"
    shutil.copytree(added.home, kept, symlinks=True)
    yield added
    shutil.rmtree(added.home)
    kept.rename(added.home)


def test_uninstall_restores_the_collection_and_removes_everything(added_then_put_back):
    added = added_then_put_back
    result = install(added.home, "--uninstall", src=added.src)
    assert result.returncode == 0, result.stdout + result.stderr
    assert json.loads(added.file.read_text()) == added.original, "only the obs-rvm entries went"
    for gone in (".local/share/obs-rvm", ".config/obs-rvm", ".cache/obs-rvm", ".local/bin/obs-rvm"):
        assert not (added.home / gone).exists(), gone
    kept = scenes.backups(added.file)
    assert len(kept) == 2 and all(str(b) in result.stdout for b in kept)
    again = install(added.home, "--uninstall", src=added.src)
    assert again.returncode == 0 and "Nothing to remove" in again.stdout


def _keys_like_the_pipeline(config, tmp_path: Path, expected: np.ndarray) -> str:
    """Run OBS until the filter's output matches the pipeline's composite; OBS's log (OBS exited cleanly)."""
    import obs_harness as harness

    with harness.Obs(config, tmp_path / "obs") as o:
        o.wait_log(r"AI Background filter registered", timeout=120)
        o.wait_for(lambda: harness.similar(o.screenshot("Person"), expected) or None, 180,
                   "the filter's output matching the pipeline's")
        log = o.log_text()
    assert o.returncode == 0
    return log
