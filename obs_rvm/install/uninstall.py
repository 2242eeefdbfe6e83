"""install.sh --uninstall: take away what the installer added.

Scene collections lose only the obs-rvm script entries (and the empty containers the installer created), so every
change the user made in OBS since the install is kept; the backups made along the way are kept too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

from .. import __version__
from ..environment import environment_file, read_environment
from ..errors import SetupError
from . import layout, obs, scenes
from .transaction import read_state


def _environment_file_is_ours() -> bool:
    try:
        return any(layout.data_dir() in Path(p).parents for p in read_environment().get("site_packages", []))
    except SetupError:
        return True  # a damaged record is the installer's to clean up


def installed_here() -> bool:
    """Whether the installer set obs-rvm up for this user. Without that, the data and cache folders belong to someone
    using obs-rvm another way (a source checkout's .venv, pip) and are not the installer's to delete."""
    return layout.state_file().exists() or layout.venv_dir().exists() or _environment_file_is_ours()


def uninstall(say) -> int:
    print(f"obs-rvm {__version__}: uninstalling")
    if not installed_here():
        print("Nothing to remove: the installer has not set obs-rvm up for this user (no "
              f"{layout.state_file()}, no {layout.venv_dir()}); other obs-rvm files were left alone.")
        return 0
    state = read_state()
    affected = [c for c in obs.collections() if any(map(layout.is_our_script, scenes.script_paths(c)))]
    if affected and obs.running_obs():
        raise SetupError("OBS is running: close it first, then run --uninstall again (OBS would write the script "
                         "back into its scene collection when it exits)")
    done: list[Path] = []
    for file in affected:
        created = tuple(state.get("collections", {}).get(str(file), {}).get("created", ()))
        edit = scenes.remove_scripts(file, layout.is_our_script, created)
        if edit.action == "removed":
            say("OBS script", f"removed from scene collection '{file.stem}' (backup: {edit.backup})")
            done.append(file)
    env = environment_file()
    if env.exists() and _environment_file_is_ours():
        env.unlink()
        with contextlib.suppress(OSError):
            env.parent.rmdir()
        say("Wiring", f"removed {env}")
        done.append(env)
    link = layout.bin_link()
    if link.is_symlink() and layout.venv_dir() in Path(os.readlink(link)).parents:
        link.unlink()
        say("Command", f"removed {link}")
        done.append(link)
    for folder, what in ((layout.data_dir(), "environment and models"), (layout.cache_root(), "caches")):
        if folder.exists():
            shutil.rmtree(folder)
            say("Files", f"removed {folder} ({what})")
            done.append(folder)
    print()
    print("Done: obs-rvm is uninstalled." if done else "Nothing to remove: obs-rvm is not installed for this user.")
    kept = [b for f in affected for b in scenes.backups(f)]
    if kept:
        print("Scene collection backups kept (delete them once OBS looks right):")
        for b in kept:
            print(f"  {b}")
    return 0
