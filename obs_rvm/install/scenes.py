"""Adding the obs-rvm script to an OBS scene collection, and taking it out again, without touching anything else.

OBS loads the scripts listed in the collection's "modules" > "scripts-tool" ([{"path": ..., "settings": {...}}])
when it opens the collection. The file is parsed and written back as JSON (OBS's own compact or indented layout,
key order kept), after a backup beside it, and replaced atomically.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import SetupError
from ..paths import atomic_write

BACKUP_TAG = "obs-rvm-backup"


@dataclass(frozen=True)
class Edit:
    file: Path
    action: str
    """What happened, for the installer's summary: 'added', 'updated', 'unchanged', 'removed', 'absent'."""
    backup: Path | None = None
    created: tuple[str, ...] = ()
    """Containers this edit created ("modules", "scripts-tool"), so removing the script can remove them too."""


def _load(file: Path) -> tuple[dict, str]:
    try:
        text = file.read_text(encoding="utf-8-sig")
        data = json.loads(text)
    except OSError as e:
        raise SetupError(f"cannot read the scene collection {file}: {e.strerror or e}") from e
    except ValueError as e:
        raise SetupError(f"the scene collection {file} is not valid JSON ({e}): open it in OBS once, or restore "
                         f"it from its .bak file") from e
    if not isinstance(data, dict):
        raise SetupError(f"{file} is not an OBS scene collection")
    return data, text


def _dump(data: dict, original: str) -> str:
    # OBS 29 writes compact JSON, later versions indent by 4: keep whichever the file had, so a diff shows only us.
    if "\n" in original.strip():
        return json.dumps(data, ensure_ascii=False, indent=4) + "\n"
    return json.dumps(data, ensure_ascii=False, separators=(",", ":"))


def _save(file: Path, data: dict, original: str) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    backup = file.with_name(f"{file.name}.{BACKUP_TAG}-{stamp}")
    n = 1
    while backup.exists():
        n += 1
        backup = file.with_name(f"{file.name}.{BACKUP_TAG}-{stamp}-{n}")
    try:
        shutil.copy2(file, backup)
        with atomic_write(file) as f:
            f.write(_dump(data, original).encode("utf-8"))
    except OSError as e:
        raise SetupError(f"cannot write the scene collection {file}: {e.strerror or e}") from e
    return backup


def _scripts(data: dict, file: Path) -> tuple[list, tuple[str, ...]]:
    created: list[str] = []
    modules = data.get("modules")
    if modules is None:
        modules = data["modules"] = {}
        created.append("modules")
    scripts = modules.get("scripts-tool") if isinstance(modules, dict) else None
    if isinstance(modules, dict) and scripts is None:
        scripts = modules["scripts-tool"] = []
        created.append("scripts-tool")
    if not isinstance(scripts, list):
        raise SetupError(f"{file} has an unexpected 'modules' section: add the script by hand in OBS (Tools > Scripts)")
    return scripts, tuple(created)


def add_script(file: Path, script: Path, ours: Callable[[str], bool]) -> Edit:
    """Make `script` load with this collection. An entry of an older obs-rvm environment (`ours`, e.g. one built for
    the Python of an earlier OBS) is pointed at the new script with its settings kept, and duplicates dropped."""
    data, original = _load(file)
    scripts, created = _scripts(data, file)
    mine = [e for e in scripts if isinstance(e, dict) and (e.get("path") == str(script) or ours(str(e.get("path"))))]
    if len(mine) == 1 and mine[0].get("path") == str(script):
        return Edit(file, "unchanged")
    if mine:
        keep = next((e for e in mine if e.get("path") == str(script)), mine[0])
        keep["path"] = str(script)
        scripts[:] = [e for e in scripts if e is keep or not any(e is m for m in mine)]
        action = "updated"
    else:
        scripts.append({"path": str(script), "settings": {}})
        action = "added"
    return Edit(file, action, backup=_save(file, data, original), created=created)


def remove_scripts(file: Path, ours: Callable[[str], bool], created: tuple[str, ...] = ()) -> Edit:
    """Drop every obs-rvm entry; containers the installer created go too once empty, so the file is as it was."""
    data, original = _load(file)
    modules = data.get("modules")
    scripts = modules.get("scripts-tool") if isinstance(modules, dict) else None
    if not isinstance(scripts, list):
        return Edit(file, "absent")
    kept = [e for e in scripts if not (isinstance(e, dict) and ours(str(e.get("path"))))]
    if len(kept) == len(scripts):
        return Edit(file, "absent")
    scripts[:] = kept
    if not kept and "scripts-tool" in created:
        del modules["scripts-tool"]
    if not modules and "modules" in created:
        del data["modules"]
    return Edit(file, "removed", backup=_save(file, data, original))


def backups(file: Path) -> list[Path]:
    return sorted(file.parent.glob(f"{file.name}.{BACKUP_TAG}-*"))


def script_paths(file: Path) -> list[str]:
    """The scripts a collection loads; a file that cannot be read lists none (it is reported where it is edited)."""
    try:
        data = json.loads(file.read_text(encoding="utf-8-sig"))
        return [str(e.get("path")) for e in data["modules"]["scripts-tool"] if isinstance(e, dict)]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
