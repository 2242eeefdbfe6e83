"""installer/install.sh: from an installed OBS to the AI Background filter in one command, safe to run again.

A run either completes or leaves the machine as it found it: what it creates is recorded as it goes and undone if a
later step fails (so a working install that a re-run fails to update stays as it was). A re-run with nothing new to
do changes no file.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from .. import __version__
from ..environment import config_dir as rvm_config_dir
from ..environment import environment_file
from ..errors import ObsRvmError, SetupError
from . import cuda, hardware, layout, obs, pyenv, scenes, system
from .transaction import Transaction, make_dir, read_state, write_state
from .uninstall import uninstall

ENGINE_SIZES = ("1280x720", "1920x1080")
EXIT_NO_GPU = 3
"""`obs-rvm engine build` exits with this when there is no GPU/TensorRT to build for (its last line says why)."""


HELP = """\
Sets up obs-rvm (the AI Background filter) for the OBS Studio installed on this machine:
  1. finds OBS (Debian/Ubuntu package, the OBS Project PPA, or --obs PATH) and the Python its scripting embeds;
  2. creates a virtual environment with that same Python version in ~/.local/share/obs-rvm/venv and installs
     obs-rvm into it, with the GPU package that suits the GPU it finds (nvidia-smi, /sys/class/drm, Vulkan):
     NVIDIA RTX 30 and later: TensorRT-RTX (ONNX Runtime's provider; a driver for CUDA 12.9+);
     other NVIDIA GPUs from Turing on (GTX 16, RTX 20, T4, A100, H100): TensorRT for the driver's CUDA (12 or
     13) and pycuda, compiled here against NVIDIA's CUDA header wheels (no CUDA toolkit needed; g++ and
     python3.X-dev are, installed when run as root);
     AMD GPUs and older NVIDIA GPUs: WebGPU over Vulkan; Intel GPUs: OpenVINO and WebGPU;
     no GPU (or --cpu-only): CPU-only. It says what is missing for the GPU (e.g. the Vulkan driver);
  3. downloads and verifies the default model (or uses --model), and with TensorRT pre-builds its engines
     for 1280x720 and 1920x1080;
  4. writes ~/.config/obs-rvm/environment.json, which tells the OBS script where all this is, and links
     ~/.local/bin/obs-rvm;
  5. with --add-to-obs, adds the script to OBS's current scene collection (OBS must be closed; a backup of the
     collection is kept beside it);
  6. checks the virtual camera (v4l2loopback) and prints what to do next.
Run it as your own user (not with sudo). Running it again changes only what is out of date."""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="install.sh", description=HELP,
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="Check an installation any time with `obs-rvm doctor`.")
    p.add_argument("--obs", metavar="PATH", help="the obs program or its install folder (default: found on the PATH)")
    p.add_argument("--python", metavar="PATH",
                   help="the Python to build the environment with; must be the version OBS embeds "
                        "(default: /usr/bin/python3.X for OBS's 3.X)")
    p.add_argument("--model", metavar="NAME|PATH",
                   help="an official model name (see `obs-rvm models`) or an RVM .onnx file to use instead of "
                        "downloading the default (default: $OBS_RVM_MODEL, else the model set up before, else "
                        "the official default)")
    p.add_argument("--cpu-only", "--cpu", dest="cpu", action="store_true",
                   help="install CPU-only even when a GPU is present (no GPU package)")
    p.add_argument("--no-engine", action="store_true", help="do not pre-build TensorRT engines (built on first use)")
    p.add_argument("--add-to-obs", action="store_true",
                   help="add the script to OBS's current scene collection (OBS must be closed)")
    p.add_argument("--collection", metavar="NAME", help="with --add-to-obs: this scene collection instead")
    p.add_argument("--uninstall", action="store_true",
                   help="remove everything the installer added: the environment, downloaded models, caches, "
                        "environment.json, the script in OBS's scene collections (backups are kept)")
    return p


def say(topic: str, message: str) -> None:
    print(f"  {topic:<12} {message}", flush=True)


class Installer:
    def __init__(self, args: argparse.Namespace, src: Path) -> None:
        self.args = args
        self.src = src
        self.tx = Transaction()
        self.state = read_state()
        self.venv = layout.venv_dir()
        self.warnings: list[str] = []
        self.collection: Path | None = None
        self.script_loaded_by: list[str] = []
        self._aside: Path | None = None

    def run(self) -> int:
        args = self.args
        print(f"obs-rvm {__version__} installer")
        self.obs = obs.find_obs(args.obs)
        say("OBS", self.obs.describe())
        if obs.flatpak_obs():
            say("", f"(a Flatpak OBS is installed too: this sets up the one above; {obs.FLATPAK_DIFFERS})")
        self.python = pyenv.find_python(self.obs.python_version, args.python)
        say("Python", f"{self.python} (the version OBS embeds)")
        self._detect()
        self.script = layout.script_path(self.venv, self.obs.python_version)
        self._preflight()

        self._environment()
        self._packages()
        self.model = self._model()
        self._engines()
        self._wire()
        self._collections()
        self.loop = system.loopback()
        say("Camera", self.loop.advice())
        self.state["installer"] = str(self.src / "installer" / "install.sh")
        write_state(self.state, self.tx)
        self._summary()
        return 0

    def _detect(self) -> None:
        """The GPU package this PC gets (obs_rvm.install.hardware decides), said with what is missing for it."""
        self.choice = hardware.decide(hardware.gather(self.obs.python_version))
        self.packages = self.choice.tensorrt
        self.gpu = self.choice.extra != "cpu" and not self.args.cpu
        say("GPU", self._describe_gpu())
        for gap in [] if self.args.cpu else self.choice.gaps:
            say("", f"{gap.problem}; fix: {gap.fix}")

    def _describe_gpu(self) -> str:
        choice = self.choice
        if self.args.cpu:
            return f"{choice.gpu}: CPU-only install (--cpu-only)"
        if not self.gpu:
            return f"{choice.gpu}: {choice.why}: CPU-only install (onnxruntime)"
        return f"{choice.gpu}: installing the GPU packages ({choice.packages()}): {choice.why}"

    def _preflight(self) -> None:
        """What can fail without network or time is checked before anything changes."""
        if os.geteuid() == 0 and os.environ.get("SUDO_USER"):
            raise SetupError("run install.sh as your own user, not with sudo: it installs into your home folder and "
                             "OBS's settings, and says which command needs sudo when one does")
        if self.args.collection and not self.args.add_to_obs:
            raise SetupError("--collection only makes sense with --add-to-obs")
        pyenv.ensure_venv_support(self.python, self.obs.python_version, say)
        make_dir(layout.data_dir(), self.tx, "the environment and models")
        make_dir(rvm_config_dir(), self.tx, "environment.json")
        if self.args.add_to_obs:
            if not (self.src / "obs_rvm" / "obs_script.py").is_file():
                raise SetupError("this version of obs-rvm has no OBS script yet (obs_rvm/obs_script.py): update "
                                 "the source checkout, or run without --add-to-obs")
            self.collection = obs.find_collection(self.args.collection)
            pids = obs.running_obs()
            if pids:
                raise SetupError(f"OBS is running (process {', '.join(map(str, pids))}): close it first, then run "
                                 f"this again (OBS rewrites its scene collection when it exits, which would undo "
                                 f"--add-to-obs)")
            make_dir(self.collection.parent, self.tx, "OBS's scene collections")

    def _environment(self) -> None:
        version = self.obs.python_version
        if self.venv.exists():
            found = pyenv.python_version(self.venv / "bin" / "python")
            if found == version:
                say("Environment", f"{self.venv} (Python {version}): kept")
                return
            self._aside = self.venv.with_name(f"venv.old-{os.getpid()}")
            self.venv.rename(self._aside)
            self.tx.moved_aside(self.venv, self._aside)  # on failure it comes back; on success finish() deletes it
            self.state.pop("stamp", None)
            say("Environment", f"rebuilding {self.venv}: it was made for Python {found or '(broken)'}, OBS now "
                               f"embeds {version}")
        else:
            self.tx.created(self.venv)
        pyenv.create_venv(self.python, self.venv, version)
        say("Environment", f"{self.venv} (Python {version}): created")

    def _packages(self) -> None:
        extra = self.choice.extra if self.gpu else "cpu"
        stamp = pyenv.source_stamp(self.src, extra)
        python = self.venv / "bin" / "python"
        if self.state.get("stamp") == stamp and pyenv.imports_ok(python)[0]:
            say("Packages", f"obs-rvm {__version__} ({self.state.get('extra', extra)}): up to date")
            return
        say("Packages", f"installing obs-rvm {__version__} and its dependencies ({extra}; a few minutes the first "
                        f"time)")
        if self.gpu and self.packages:
            # pycuda first, built against NVIDIA's header wheels (no CUDA toolkit needed); then TensorRT's wheel
            # for the driver's CUDA major, with obs-rvm (pip keeps the pycuda just installed).
            ok, reason = cuda.install_pycuda(python, self.obs.python_version, self.packages, say)
            if ok:
                ok, reason = pyenv.pip_install(self.venv, cuda.tensorrt_target(self.src, self.packages))
        elif self.gpu:
            ok, reason = pyenv.pip_install(self.venv, pip_target(self.src, self.choice.extras))
        else:
            ok, reason = pyenv.pip_install(self.venv, str(self.src))
        installed = extra
        if not ok and self.gpu:
            what = "the NVIDIA GPU packages" if self.packages else f"the GPU packages ({self.choice.packages()})"
            self.warnings.append(f"{what} could not be installed ({reason}): installed CPU-only. Fix that and run "
                                 f"this again; `obs-rvm doctor` shows what is missing")
            say("Packages", "the GPU packages failed: installing CPU-only instead")
            self.gpu = False
            ok, reason = pyenv.pip_install(self.venv, str(self.src))
            installed = "cpu (the GPU packages failed)"
        if not ok:
            raise SetupError(f"pip could not install obs-rvm into {self.venv}: {reason}. Check the network (pip needs "
                             f"https://pypi.org), then run this again")
        ok, error = pyenv.imports_ok(python)
        if not ok:
            raise SetupError(f"obs-rvm was installed but does not load ({error}); please report this with the "
                             f"output above")
        # A CPU fallback gets no stamp: the next run tries the GPU packages again.
        self.state.update(stamp=stamp if installed == extra else None, extra=installed)
        say("Packages", f"obs-rvm {__version__} installed ({installed})")
        if obs.running_obs():
            self.warnings.append("OBS is running with the previous packages loaded: restart it to use these")

    def _model(self) -> dict:
        # No model named: the one set up before (kept in the install record too, so a damaged environment.json
        # does not lose it), else the official default.
        kept = self.state.get("default_model")
        spec = self.args.model or os.environ.get("OBS_RVM_MODEL") or (kept if kept and Path(kept).is_file() else None)
        if spec and Path(spec).expanduser().exists():
            spec = str(Path(spec).expanduser().resolve())
        cmd = [str(self.venv / "bin" / "python"), "-m", "obs_rvm.install.model", *([spec] if spec else [])]
        out = subprocess.run(cmd, capture_output=True, text=True, env=pyenv.child_env())
        if out.returncode != 0:
            lines = [line for line in out.stderr.strip().splitlines() if line.strip()]
            message = lines[-1].removeprefix("error: ") if lines else f"exit code {out.returncode}"
            raise SetupError(f"model: {message}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        for path in result["created"]:
            self.tx.created(Path(path))
        say("Model", f"{result['name']}: {result['path']} ({result['check']}"
                     + (")" if result["created"] else "; already in place)"))
        if result.get("note"):
            self.warnings.append(result["note"])
        if result["default_model"]:
            self.state["default_model"] = result["default_model"]
        else:
            self.state.pop("default_model", None)
        return result

    def _engines(self) -> None:
        if not self.gpu:
            say("Engines", "skipped: no GPU package (the CPU runs onnxruntime, nothing to pre-build)")
            return
        if self.packages is None:
            if "tensorrt-rtx" in self.choice.extras:
                say("Engines", "TensorRT-RTX builds each engine the first time it needs it (seconds) and keeps it in "
                               f"{layout.cache_root() / 'tensorrt-rtx'}")
            else:
                say("Engines", f"nothing to pre-build for {self.choice.title()}")
            return
        if self.args.no_engine:
            say("Engines", "skipped (--no-engine): the filter builds each engine the first time it needs it")
            return
        tool = str(self.venv / "bin" / "obs-rvm")
        if subprocess.run([tool, "engine", "--help"], capture_output=True, env=pyenv.child_env()).returncode != 0:
            say("Engines", "skipped: this obs-rvm cannot pre-build engines; the filter builds each engine the first "
                           "time it needs it (a minute or two)")
            return
        sizes = [a for size in ENGINE_SIZES for a in ("--size", size)]
        say("Engines", f"building TensorRT engines for {', '.join(ENGINE_SIZES)} (a few minutes, once)")
        code, last = pyenv.run_logged([tool, "engine", "build", *sizes])
        if code == 0:
            say("Engines", "ready")
        elif code == EXIT_NO_GPU:
            say("Engines", f"skipped: {last[-1] if last else 'no usable GPU'}")
        else:
            self.warnings.append(f"the TensorRT engines could not be pre-built ({last[-1] if last else code}); the "
                                 f"filter will try again when it starts. Retry: {tool} engine build {' '.join(sizes)}")

    def _wire(self) -> None:
        """environment.json for the OBS script (written by the environment's own Python, which knows its
        site-packages), and `obs-rvm` on the PATH."""
        path = environment_file()
        existed = path.exists()
        if existed:
            self.tx.replaced(path)
        python = self.venv / "bin" / "python"
        out = subprocess.run([str(python), "-m", "obs_rvm.environment", self.model["default_model"] or ""],
                             capture_output=True, text=True, env=pyenv.child_env())
        if out.returncode != 0:
            lines = out.stderr.strip().splitlines()
            raise SetupError(f"could not write {path}: {lines[-1] if lines else out.returncode}")
        result = json.loads(out.stdout.strip().splitlines()[-1])
        if not existed:
            self.tx.created(path)
        say("Wiring", f"{path}: {('updated' if existed else 'written') if result['changed'] else 'up to date'}")
        if "script" not in result["record"]:
            self.warnings.append(f"this version of obs-rvm has no OBS script ({self.script} is missing): the "
                                 f"command line works, the OBS filter does not")
        self._link()

    def _link(self) -> None:
        link, target = layout.bin_link(), self.venv / "bin" / "obs-rvm"
        if link.is_symlink() and Path(os.readlink(link)) == target:
            return
        if link.exists() or link.is_symlink():
            self.warnings.append(f"{link} exists and is not the installer's: left alone (run {target} instead)")
            return
        try:
            make_dir(link.parent, self.tx, "the obs-rvm command")
            link.symlink_to(target)
            self.tx.created(link)
        except (OSError, SetupError) as e:
            self.warnings.append(f"could not link {link} ({e}): run {target} instead")

    def _collections(self) -> None:
        """Point every obs-rvm entry in OBS's scene collections at this environment (an OBS update can change its
        Python, and with it the script's path), and add the script where --add-to-obs asks."""
        stale = [c for c in obs.collections()
                 if any(layout.is_our_script(p) and p != str(self.script) for p in scenes.script_paths(c))]
        targets = list(dict.fromkeys(stale + ([self.collection] if self.collection else [])))
        if stale and not self.collection and obs.running_obs():
            self.warnings.append(f"OBS is running: close it and run this again to point {len(stale)} scene "
                                 f"collection(s) at the new environment")
            return
        recorded = self.state.setdefault("collections", {})
        for file in targets:
            self.tx.replaced(file)
            edit = scenes.add_script(file, self.script, layout.is_our_script)
            if edit.created:
                recorded[str(file)] = {"created": list(edit.created)}
            if edit.action == "unchanged":
                say("OBS script", f"already in scene collection '{file.stem}'")
            else:
                say("OBS script", f"{edit.action} in scene collection '{file.stem}' (backup: {edit.backup})")
        self.script_loaded_by = [c.stem for c in obs.collections() if str(self.script) in scenes.script_paths(c)]
        if not recorded:
            self.state.pop("collections")

    def finish(self) -> None:
        if self._aside:
            shutil.rmtree(self._aside, ignore_errors=True)

    def _summary(self) -> None:
        print()
        backend = f"GPU ({self.choice.title()})" if self.gpu else "CPU (onnxruntime)"
        print(f"Done: obs-rvm is set up for OBS Studio {self.obs.version} (Python {self.obs.python_version}, "
              f"{backend}).")
        for warning in self.warnings:
            print(f"Warning: {warning}")
        if self.script_loaded_by:
            names = ", ".join(f"'{n}'" for n in self.script_loaded_by)
            steps = [f"start OBS: the AI Background script loads with scene collection {names}"]
        else:
            steps = [f"in OBS: Tools > Scripts > + and pick {self.script} (or close OBS and run this again with "
                     f"--add-to-obs)"]
        steps.append("add the filter: right-click your camera source > Filters > + > AI Background")
        if not self.loop.loaded:
            install = "" if self.loop.available else f"{system.INSTALL_V4L2LOOPBACK}, then "
            steps.append(f"for OBS's virtual camera (Zoom, Meet, ...): {install}{system.MODPROBE}")
        print("Next:")
        for i, step in enumerate(steps, 1):
            print(f"  {i}. {step}")
        link = layout.bin_link()
        on_path = link.is_symlink() and str(link.parent) in os.environ.get("PATH", "").split(os.pathsep)
        command = "obs-rvm" if on_path else str(self.venv / "bin" / "obs-rvm")
        print(f"Check the setup any time: {command} doctor. Remove it all: installer/install.sh --uninstall")


def pip_target(src: Path, extras: tuple[str, ...]) -> str:
    """What pip installs for the plugin providers: obs-rvm from the checkout with their extras (pyproject)."""
    return f"{src}[{','.join(extras)}]" if extras else str(src)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    src = Path(os.environ.get("OBS_RVM_SOURCE") or Path(__file__).resolve().parents[2])
    if args.uninstall:
        try:
            return uninstall(say)
        except (ObsRvmError, OSError) as e:
            print(f"install.sh: error: {e}", file=sys.stderr)
            return 1
    installer = Installer(args, src)
    try:
        code = installer.run()
    except (ObsRvmError, OSError, KeyboardInterrupt) as e:
        undone = installer.tx.rollback()
        message = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)
        print(f"install.sh: error: {message}", file=sys.stderr)
        if undone:
            print("Undid this run's changes: " + "; ".join(undone), file=sys.stderr)
        else:
            print("Nothing was changed.", file=sys.stderr)
        return 130 if isinstance(e, KeyboardInterrupt) else 1
    installer.finish()
    return code
