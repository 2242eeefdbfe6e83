"""Which OBS Studio is installed, which Python it embeds, where it keeps its settings, and whether it is running.

OBS on Linux does not use a virtual environment or the `python3` on the PATH: its scripting library links one
libpython at build time (3.11 for Debian 12's OBS 29). The environment must be built with that very version, so it
is read from the library itself (ldd), not guessed from the OBS version.
"""

from __future__ import annotations

import configparser
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import SetupError

FLATPAK_ID = "com.obsproject.Studio"
OBS_SEARCH = ("/usr/bin/obs", "/usr/local/bin/obs", "/opt/obs-studio/bin/obs")
"""Where OBS lives when `obs` is not on the PATH (distribution package, PPA, a build from source)."""
INSTALL_OBS = ("install OBS Studio (Debian/Ubuntu: sudo apt-get install obs-studio; the OBS Project PPA: "
               "sudo add-apt-repository ppa:obsproject/obs-studio && sudo apt-get install obs-studio), or give "
               "its location with --obs PATH")
FLATPAK_DIFFERS = (
    f"Flatpak OBS ({FLATPAK_ID}) is not set up automatically: it runs scripts with the Python of its Flatpak runtime "
    f"(see `flatpak run --command=python3 {FLATPAK_ID} --version`), not the system one, reads its settings from "
    f"~/.var/app/{FLATPAK_ID}/config instead of ~/.config, and needs the Flatpak NVIDIA GL extension matching your "
    f"driver for the GPU. Install the native package instead (sudo apt-get install obs-studio, or the OBS Project "
    f"PPA) and run this again, or follow the manual Flatpak steps in docs/install.md (untested)"
)


@dataclass(frozen=True)
class ObsInstall:
    binary: Path
    version: str
    """As `obs --version` says it, e.g. 29.0.2; "unknown" if it would not say."""
    origin: str
    """Debian/Ubuntu package, OBS Project PPA, or not from a package."""
    scripting: Path
    """The library that links libpython (libobs-scripting.so or the obspython module)."""
    python_version: str
    """The Python OBS embeds, "3.11"."""

    def describe(self) -> str:
        return f"OBS Studio {self.version} ({self.origin}, {self.binary}), Python {self.python_version}"


def find_obs(given: str | None = None, search: tuple[str, ...] = OBS_SEARCH) -> ObsInstall:
    """The OBS to set up: the one given (program or install folder), else the one on the PATH or in `search`."""
    binary = _given_binary(Path(given).expanduser()) if given else _search_binary(search)
    scripting, python_version = scripting_python(binary)
    return ObsInstall(binary=binary, version=obs_version(binary), origin=package_origin(binary),
                      scripting=scripting, python_version=python_version)


def _given_binary(path: Path) -> Path:
    candidates = [path] if path.is_file() else [path / "bin" / "obs", path / "obs"]
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    raise SetupError(f"OBS not found at {path}: give the obs program or the folder it is installed in "
                     f"(e.g. --obs /usr/bin/obs or --obs /opt/obs-studio)")


def _search_binary(search: tuple[str, ...]) -> Path:
    on_path = shutil.which("obs")
    for candidate in ([on_path] if on_path else []) + list(search):
        if Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    if flatpak_obs():
        raise SetupError(f"only the Flatpak OBS is installed. {FLATPAK_DIFFERS}")
    raise SetupError(f"OBS Studio is not installed: {INSTALL_OBS}")


def flatpak_obs() -> Path | None:
    """The Flatpak OBS install folder (system-wide or per user), if there is one."""
    user = Path(os.environ.get("XDG_DATA_HOME", "").strip() or Path.home() / ".local/share")
    for root in (Path("/var/lib/flatpak"), user / "flatpak"):
        if (root / "app" / FLATPAK_ID).is_dir():
            return root / "app" / FLATPAK_ID
    return None


def _ldd(path: Path) -> str:
    try:
        return subprocess.run(["ldd", str(path)], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.TimeoutExpired):
        return ""


def _library_dirs(binary: Path) -> list[Path]:
    """Where OBS's own libraries are: next to the libobs the program loads, and the usual folders of its prefix."""
    dirs = []
    match = re.search(r"libobs\.so\S*\s+=>\s+(\S+)", _ldd(binary))
    if match:
        dirs.append(Path(match.group(1)).resolve().parent)
    prefix = binary.resolve().parent.parent
    dirs += [prefix / "lib", prefix / "lib64", *sorted((prefix / "lib").glob("*-linux-gnu"))]
    return list(dict.fromkeys(d for d in dirs if d.is_dir()))


def scripting_python(binary: Path) -> tuple[Path, str]:
    """The OBS library that links libpython, and that Python's version."""
    candidates: list[Path] = []
    for d in _library_dirs(binary):
        candidates += sorted(d.glob("libobs-scripting.so*"))
        candidates += [d / "obs-scripting" / "_obspython.so", d / "obs-plugins" / "frontend-tools.so"]
    seen_scripting = False
    for lib in candidates:
        if not lib.is_file():
            continue
        seen_scripting = True
        match = re.search(r"libpython(3\.\d+)", _ldd(lib))
        if match:
            return lib, match.group(1)
    if not seen_scripting:
        raise SetupError(f"OBS at {binary} has no scripting library (libobs-scripting.so not found beside its "
                         f"libobs): reinstall OBS from your distribution or the OBS Project PPA")
    raise SetupError(f"OBS at {binary} was built without Python scripting (its scripting library links no "
                     f"libpython): install an OBS build with Python scripting, e.g. sudo apt-get install obs-studio")


def obs_version(binary: Path) -> str:
    # `obs --version` creates its settings folder as a side effect: let it create a throwaway one instead.
    try:
        with tempfile.TemporaryDirectory(prefix="obs-rvm-") as scratch:
            env = {**os.environ, "XDG_CONFIG_HOME": scratch}
            out = subprocess.run([str(binary), "--version"], capture_output=True, text=True, timeout=20, env=env).stdout
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    match = re.search(r"(\d+\.\d+(?:\.\d+)?)", out)
    return match.group(1) if match else "unknown"


def package_origin(binary: Path) -> str:
    """Which package installed OBS (a PPA build says so in its version), for messages and the doctor."""
    try:
        owner = subprocess.run(["dpkg", "-S", str(binary.resolve())], capture_output=True, text=True, timeout=20)
        package = owner.stdout.split(":", 1)[0].strip() if owner.returncode == 0 else ""
        version = subprocess.run(["dpkg-query", "-W", "-f=${Version}", package], capture_output=True, text=True,
                                 timeout=20).stdout.strip() if package else ""
    except (OSError, subprocess.TimeoutExpired):
        package = version = ""
    if not package:
        return "not from a package"
    if "obsproject" in version:
        return f"OBS Project PPA, {package} {version}"
    return f"distribution package {package} {version}"


# -- OBS's settings --------------------------------------------------------------------------------------------------


def config_dir() -> Path:
    """~/.config/obs-studio (OBS honours XDG_CONFIG_HOME)."""
    base = os.environ.get("XDG_CONFIG_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".config") / "obs-studio"


def _ini_value(config: Path, section: str, key: str) -> str | None:
    # OBS 31 keeps user settings in user.ini, earlier versions in global.ini.
    for name in ("user.ini", "global.ini"):
        parser = configparser.ConfigParser(interpolation=None, strict=False)
        parser.optionxform = str  # OBS keys are case-sensitive
        try:
            parser.read(config / name, encoding="utf-8-sig")
        except (configparser.Error, UnicodeDecodeError):
            continue
        if parser.has_option(section, key):
            return parser.get(section, key)
    return None


def collections(config: Path | None = None) -> list[Path]:
    """Every scene collection file."""
    return sorted(((config or config_dir()) / "basic" / "scenes").glob("*.json"))


def find_collection(name: str | None = None, config: Path | None = None) -> Path:
    """The scene collection OBS opens next (the current one), or the one named (file name or display name)."""
    config = config or config_dir()
    scenes = config / "basic" / "scenes"
    if name:
        for path in collections(config):
            if name in (path.stem, path.name, _collection_name(path)):
                return path
        known = ", ".join(f"'{_collection_name(p) or p.stem}'" for p in collections(config)) or "none"
        raise SetupError(f"no scene collection named '{name}' in {scenes} (there are: {known})")
    current = _ini_value(config, "Basic", "SceneCollectionFile")
    if not current:
        raise SetupError(f"OBS has not saved a scene collection yet ({config} has none): start OBS once, close it, "
                         f"then run this again")
    path = scenes / f"{current}.json"
    if not path.is_file():
        raise SetupError(f"OBS's current scene collection file {path} is missing: start OBS once, close it, then run "
                         f"this again (or name one with --collection)")
    return path


def _collection_name(path: Path) -> str | None:
    try:
        name = json.loads(path.read_text(encoding="utf-8-sig")).get("name")
    except (OSError, ValueError, AttributeError):
        return None
    return name if isinstance(name, str) else None


def running_obs(config: Path | None = None) -> list[int]:
    """Process ids of OBS instances using this settings folder: OBS rewrites its scene collection when it exits, so
    an edit made while it runs would be lost. Instances of other users or other settings folders do not count."""
    config = (config or config_dir()).resolve()
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if (proc / "comm").read_text().strip() != "obs":
                continue
            if any(a in (b"-p", b"--portable") for a in (proc / "cmdline").read_bytes().split(b"\0")):
                continue
            env = dict(item.split(b"=", 1) for item in (proc / "environ").read_bytes().split(b"\0") if b"=" in item)
        except PermissionError:
            if proc.stat().st_uid == os.getuid():
                found.append(int(proc.name))  # ours but unreadable: assume the worst
            continue
        except (OSError, ValueError):
            continue  # the process went away
        base = env.get(b"XDG_CONFIG_HOME", b"").decode(errors="replace").strip()
        home = env.get(b"HOME", b"").decode(errors="replace")
        their = (Path(base) if base else Path(home or "/nonexistent") / ".config") / "obs-studio"
        if their.resolve() == config:
            found.append(int(proc.name))
    return found
