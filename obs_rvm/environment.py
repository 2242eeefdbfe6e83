"""environment.json: what the installer set up, for the OBS script and every other obs-rvm process.

OBS started from the desktop has none of the user's shell variables, so the installer writes down where the
dependencies live and which model replaces the default one. The OBS script reads the file with plain `json` before
it can import anything (so it computes the path itself, the same way as `environment_file`); this module is the
reference for everyone else. Stdlib only: the installer runs it with a bare system Python.

    {
      "site_packages": ["/home/me/.local/share/obs-rvm/venv/lib/python3.11/site-packages"],
      "python": "/home/me/.local/share/obs-rvm/venv/bin/python",
      "python_version": "3.11",
      "script": ".../site-packages/obs_rvm/obs_script.py",
      "model": "/home/me/.local/share/obs-rvm/models/custom/my-rvm.onnx"
    }

Only `site_packages` is required. `model` is present only when the installer was given a model file that is not an
official release asset; it then stands in for the default model (see models.resolve_model).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from .errors import SetupError
from .paths import APP, atomic_write

FILE_NAME = "environment.json"


def config_dir() -> Path:
    """$XDG_CONFIG_HOME/obs-rvm, else ~/.config/obs-rvm (what platformdirs.user_config_dir gives on Linux);
    %APPDATA%\\obs-rvm on Windows. The OBS script computes the same path on its own."""
    if os.name == "nt":
        return Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming") / APP
    base = os.environ.get("XDG_CONFIG_HOME", "").strip()
    return (Path(base) if base else Path.home() / ".config") / APP


def environment_file() -> Path:
    return config_dir() / FILE_NAME


def read_environment(path: Path | None = None) -> dict:
    """The installer's record, or {} when there is none. A file that cannot be used is an error, not a shrug:
    silently ignoring it would leave OBS without its dependencies and the user without a reason."""
    path = path or environment_file()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as e:
        raise SetupError(f"{path} cannot be read ({e}): run installer/install.sh again to rewrite it") from e
    if not isinstance(data, dict) or not isinstance(data.get("site_packages", []), list):
        raise SetupError(f"{path} is not an obs-rvm environment file: run installer/install.sh again to rewrite it")
    return data


def installed_model() -> Path | None:
    """The model file the installer put in place of the default model, if any."""
    model = read_environment().get("model")
    return Path(model) if model else None


def write_environment(data: dict, path: Path | None = None) -> bool:
    """Write the record if it differs from what is there; returns whether the file changed."""
    path = path or environment_file()
    text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    try:
        if path.read_text(encoding="utf-8") == text:
            return False
    except (OSError, ValueError):
        pass
    with atomic_write(path) as f:
        f.write(text.encode("utf-8"))
    return True


def main(argv: list[str] | None = None) -> int:
    """`python -m obs_rvm.environment [MODEL]`, run with the environment's own Python (by install.sh, and by the
    Windows helper): record this environment for the OBS script, and the model that replaces the default one."""
    import sys
    import sysconfig

    args = sys.argv[1:] if argv is None else argv
    paths = sysconfig.get_paths()
    site_packages = list(dict.fromkeys([paths["purelib"], paths["platlib"]]))
    record: dict = {"site_packages": site_packages, "python": sys.executable,
                    "python_version": f"{sys.version_info[0]}.{sys.version_info[1]}"}
    script = Path(paths["purelib"]) / "obs_rvm" / "obs_script.py"
    if script.is_file():
        record["script"] = str(script)
    if args and args[0]:
        record["model"] = args[0]
    changed = write_environment(record)
    print(json.dumps({"path": str(environment_file()), "changed": changed, "record": record}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
