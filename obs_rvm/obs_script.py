"""OBS Studio script that adds the "AI Background" video filter. Add this file in OBS: Tools > Scripts > +.

OBS runs scripts in its own embedded Python, whose sys.path has none of the project's dependencies. Before
importing anything third-party this file finds them, in this order:
  1. OBS_RVM_SITE_PACKAGES: site-packages folders separated by os.pathsep;
  2. environment.json written by the installer: $XDG_CONFIG_HOME/obs-rvm/ (default ~/.config/obs-rvm/;
     %APPDATA%\\obs-rvm\\ on Windows), {"site_packages": [...], "source": "<folder containing obs_rvm>"};
  3. the environment this package is installed in (this file inside a site-packages folder);
  4. a source checkout's .venv beside the obs_rvm folder.
If they cannot be imported the script still loads and logs one line saying what to run.
Only the standard library may be used above the marked line.
"""

from __future__ import annotations

import importlib
import json
import os
import site
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
SETUP_HINT = ("run `bash installer/install.sh` in the obs-rvm folder (or, in a source checkout: "
              "`python{v} -m venv .venv && .venv/bin/pip install -e .`), then reload this script or restart OBS")


@dataclass(frozen=True)
class Environment:
    origin: str
    site_packages: tuple[Path, ...]
    source: Path | None = None
    """Folder containing obs_rvm, when the environment says where it is."""


def config_file(environ: Mapping[str, str]) -> Path:
    if os.name == "nt":
        base = Path(environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    else:
        base = Path(environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "obs-rvm" / "environment.json"


def find_environment(script_dir: Path, environ: Mapping[str, str],
                     version: tuple[int, int] = sys.version_info[:2]) -> tuple[Environment | None, list[str]]:
    """The first place in the search order that exists, and why each earlier place was passed over."""
    passed: list[str] = []
    value = environ.get("OBS_RVM_SITE_PACKAGES", "")
    if value:
        found = tuple(p for p in map(Path, filter(None, value.split(os.pathsep))) if p.is_dir())
        if found:
            return Environment("OBS_RVM_SITE_PACKAGES", found), passed
        passed.append(f"OBS_RVM_SITE_PACKAGES={value} (no such folder)")
    cfg = config_file(environ)
    try:
        data = json.loads(cfg.read_text(encoding="utf-8"))
        found = tuple(p for p in map(Path, data.get("site_packages") or []) if p.is_dir())
        source = Path(data["source"]) if data.get("source") else None
        if found:
            return Environment(str(cfg), found, source), passed
        passed.append(f"{cfg} (lists no existing folder)")
    except FileNotFoundError:
        passed.append(f"{cfg} (not found)")
    except (OSError, ValueError, TypeError, AttributeError) as e:
        passed.append(f"{cfg} (unreadable: {e})")
    parent = script_dir.parent
    if parent.name in ("site-packages", "dist-packages"):
        return Environment("the package's own environment", (parent,)), passed
    venv = parent / ".venv"
    lib = venv / "Lib" if os.name == "nt" else venv / "lib" / f"python{version[0]}.{version[1]}"
    if (lib / "site-packages").is_dir():
        return Environment(str(venv), (lib / "site-packages",)), passed
    reason = "not found" if not venv.is_dir() else f"not made with Python {version[0]}.{version[1]}, which OBS runs"
    passed.append(f"{venv} ({reason})")
    return None, passed


def activate(env: Environment | None, script_dir: Path) -> None:
    """Put the package this script belongs to first on sys.path, then the environment's site-packages (with their
    .pth files), ahead of the system's own packages (an older distro numpy must not win)."""
    before = list(sys.path)
    for folder in env.site_packages if env else ():
        site.addsitedir(str(folder))
    own = script_dir.parent if (script_dir / "__init__.py").is_file() else (env.source if env else None)
    front = ([str(own)] if own else []) + [p for p in sys.path if p not in before]
    sys.path[:] = front + [p for p in before if p not in front]
    importlib.invalidate_caches()


ENVIRONMENT, PASSED = find_environment(HERE, os.environ)
if "obspython" in sys.modules:  # inside OBS (tests import this file only for the functions above)
    activate(ENVIRONMENT, HERE)

# ---- third-party imports only below this line -----------------------------------------------------------------

try:
    from obs_rvm.obs import filter as _filter

    _MISSING = ""
except Exception as e:  # ImportError mostly; numpy also raises others for a wrong Python version
    _filter = None
    _version = f"{sys.version_info[0]}.{sys.version_info[1]}"
    _where = (f"dependencies from {ENVIRONMENT.origin}: {', '.join(map(str, ENVIRONMENT.site_packages))}"
              if ENVIRONMENT else "searched " + "; ".join(PASSED))
    _MISSING = (f"AI Background is not available: {e} (OBS's Python {_version}; {_where}). To fix it, "
                + SETUP_HINT.format(v=_version))


def _log(level: int, message: str) -> None:
    try:
        from obs_rvm.obs import libobs

        libobs.log(level, message)
    except Exception:  # libobs not loadable: OBS still shows print() in the script log
        print(message)


def script_description() -> str:
    if _MISSING:
        return f"<b>AI Background</b><p>{_MISSING}</p>"
    return ("<b>AI Background</b> (obs-rvm): real-time background removal with Robust Video Matting."
            "<p>Add it to a video source: right-click the source &gt; Filters &gt; + &gt; AI Background.</p>"
            f"<p>Dependencies: {ENVIRONMENT.origin if ENVIRONMENT else 'OBS Python'}</p>")


def script_load(settings) -> None:
    if _filter is None:
        _log(200, _MISSING)
        return
    _filter.register()


def script_unload() -> None:
    if _filter is not None:
        _filter.suspend()
