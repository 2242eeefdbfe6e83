"""Put the model OBS will use in place: run by the installer with the new environment's Python (it needs onnx).

`python -m obs_rvm.install.model [NAME|PATH]` prints one JSON line describing the result; progress goes to stderr.
"""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from ..environment import installed_model
from ..errors import ModelError, ObsRvmError, SetupError
from ..graph_build import load_rvm
from ..models import (
    catalog,
    default_model,
    default_model_name,
    download_failure,
    download_model,
    fallback_model_name,
    fallback_note,
    file_sha256,
    resolve_model,
    verification_note,
)
from ..paths import atomic_write, model_dir

CUSTOM = "custom"
"""Subfolder of the models folder for files that are not official release assets: never filed under an official
name, so nothing passes them off as the published model."""


def provision(spec: str | None) -> dict:
    """spec None keeps the model a previous run set up, else the default rule (the official model, downloaded now
    if it can be, else the bundled one); a catalog name is that asset, downloaded and checked (a failed download is
    an error); a path is checked as an RVM model and copied (an official asset under its own name)."""
    if spec is None:
        try:
            kept = installed_model()
        except SetupError:
            kept = None  # a damaged environment.json: the installer is about to rewrite it
        if kept and kept.is_file():
            return _custom(kept)
        return _default()
    path = Path(spec).expanduser()
    if spec in catalog() and not path.exists():
        return _official(spec)
    if path.exists() or "/" in spec or spec.endswith(".onnx"):
        return _custom(path.resolve())
    raise ModelError(f"unknown model '{spec}': choose one of {', '.join(catalog())} or give the path of an RVM "
                     f".onnx file")


def _default() -> dict:
    entry = catalog()[default_model_name()]
    if entry.local_path().exists():
        return _official(entry.name)
    fallback = catalog()[fallback_model_name()]
    existed = fallback.local_path().exists()
    print(f"downloading {entry.file} ({entry.size / 1e6:.0f} MB) from the official release", file=sys.stderr)
    model = default_model()
    if model.name == entry.name:
        load_rvm(model.path)
        return {"name": entry.name, "path": str(model.path), "sha256": model.sha256,
                "check": verification_note(entry), "default_model": None, "created": [str(model.path)]}
    load_rvm(model.path)
    return {"name": model.name, "path": str(model.path), "sha256": model.sha256,
            "check": verification_note(fallback), "default_model": None,
            "created": [] if existed else [str(model.path)],
            "note": f"{download_failure(entry) or 'the official model is not downloaded'}; {fallback_note()}"}


def _official(name: str) -> dict:
    entry = catalog()[name]
    path = entry.local_path()
    existed = path.exists()
    if not existed and entry.url:
        print(f"downloading {entry.file} ({entry.size / 1e6:.0f} MB) from the official release", file=sys.stderr)
        download_model(entry)
    model = resolve_model(name, download=False)  # the bundled model: restored here
    load_rvm(model.path)
    return {"name": name, "path": str(model.path), "sha256": model.sha256, "check": verification_note(entry),
            "default_model": None, "created": [] if existed else [str(model.path)]}


def _custom(source: Path) -> dict:
    if not source.is_file():
        raise ModelError(f"model file not found: {source}")
    load_rvm(source)  # an ONNX graph with RVM's inputs and outputs, or a ModelError saying what is wrong
    sha = file_sha256(source)
    # The bundled model given as a file stays a custom file: only downloaded assets are filed under their name.
    official = next((e for e in catalog().values() if e.sha256 == sha and not e.bundled), None)
    dest = model_dir() / official.file if official else model_dir() / CUSTOM / source.name
    created = []
    if dest.resolve() != source and not (dest.is_file() and file_sha256(dest) == sha):
        created = [] if dest.exists() else [str(dest)]
        try:
            with open(source, "rb") as src, atomic_write(dest) as out:
                shutil.copyfileobj(src, out, 1 << 20)
        except OSError as e:
            raise ModelError(f"cannot copy the model to {dest}: {e.strerror or e}") from e
        if file_sha256(dest) != sha:
            dest.unlink()
            raise ModelError(f"the copy of {source} in {dest} differs from the original (disk full?): deleted it")
    if official:
        return {"name": official.name, "path": str(dest), "sha256": sha, "check": "official asset: sha256 verified",
                "default_model": None, "created": created}
    return {"name": source.name, "path": str(dest), "sha256": sha,
            "check": "not an official release asset; checked to be an RVM model",
            "default_model": str(dest), "created": created}


def main(argv: list[str]) -> int:
    try:
        result = provision(argv[0] if argv else None)
    except ObsRvmError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
