"""The model catalog, and turning a model name or path into a verified local file.

Users name a model from the catalog (downloaded once from the official RVM release, checked by size and sha256)
or give a path. `OBS_RVM_MODEL` (a file) replaces every catalog name: tests and offline machines use it. A model
file given to the installer (environment.json "model") replaces the default model (no name, or the default's
name; other catalog names still mean their own asset), so OBS started from the desktop, without OBS_RVM_MODEL,
uses it too.
"""

from __future__ import annotations

import hashlib
import json
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from .environment import environment_file, installed_model
from .errors import ModelError
from .paths import atomic_write, cache_dir, model_dir

ProgressFn = Callable[[int, int | None], None]
"""Called with (bytes done, bytes total or None) while downloading."""


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    file: str
    url: str
    size: int | None
    sha256: str | None
    precision: str
    backbone: str
    license: str


@dataclass(frozen=True)
class ModelFile:
    """A model ready to load: where it is and the content hash that keys every derived cache."""

    name: str
    path: Path
    sha256: str


def _manifest_path() -> Path:
    # Wheels carry the manifest inside the package; a source checkout keeps it in models/.
    packaged = Path(__file__).with_name("manifest.json")
    return packaged if packaged.exists() else Path(__file__).resolve().parent.parent / "models" / "manifest.json"


@lru_cache(maxsize=1)
def _manifest() -> dict:
    return json.loads(_manifest_path().read_text())


def catalog() -> dict[str, CatalogEntry]:
    return {name: CatalogEntry(name=name, **entry) for name, entry in _manifest()["models"].items()}


def default_model_name() -> str:
    return _manifest()["default"]


def file_sha256(path: Path) -> str:
    """sha256 of a file, remembered per (path, size, mtime) so large models are hashed once, not on every start."""
    st = path.stat()
    key = hashlib.sha1(str(path.resolve()).encode()).hexdigest()
    memo = cache_dir("hashes") / f"{key}.json"
    stamp = {"size": st.st_size, "mtime_ns": st.st_mtime_ns}
    try:
        saved = json.loads(memo.read_text())
        if {k: saved.get(k) for k in stamp} == stamp:
            return saved["sha256"]
    except (OSError, ValueError, KeyError):
        pass
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    sha = digest.hexdigest()
    try:
        with atomic_write(memo, "w") as f:
            json.dump({**stamp, "sha256": sha}, f)
    except OSError:
        pass  # a read-only cache only costs a re-hash next time
    return sha


def _looks_like_path(spec: str) -> bool:
    return os.sep in spec or "/" in spec or spec.endswith(".onnx") or Path(spec).exists()


def resolve_model(spec: str | None = None, *, download: bool = True, progress: ProgressFn | None = None) -> ModelFile:
    """Return a verified local model for a catalog name, a file path, or None (the default model)."""
    spec = (spec or "").strip() or None
    if spec and _looks_like_path(spec):
        return _local_file(Path(spec).expanduser(), name=Path(spec).name)
    override = os.environ.get("OBS_RVM_MODEL")
    if override:
        return _local_file(Path(override).expanduser(), name=Path(override).name, origin="OBS_RVM_MODEL")
    installed = installed_model() if spec in (None, default_model_name()) else None
    if installed:
        return _local_file(installed, name=installed.name, origin=f"the default model set in {environment_file()}: "
                           f"re-run installer/install.sh")
    name = spec or default_model_name()
    entries = catalog()
    if name not in entries:
        raise ModelError(f"unknown model '{name}': choose one of {', '.join(entries)} or give a path to an .onnx file")
    entry = entries[name]
    path = model_dir() / entry.file
    if not path.exists():
        if not download:
            raise ModelError(f"model '{name}' is not downloaded yet: run `obs-rvm models download {name}`")
        download_model(entry, progress=progress)
    sha = file_sha256(path)
    if entry.sha256 and sha != entry.sha256:
        raise ModelError(
            f"model file {path} does not match the published sha256 (got {sha[:12]}…, expected {entry.sha256[:12]}…): "
            f"delete it and run `obs-rvm models download {name}`"
        )
    return ModelFile(name=name, path=path, sha256=sha)


def _local_file(path: Path, name: str, origin: str = "model path") -> ModelFile:
    if not path.is_file():
        raise ModelError(f"model file not found: {path} ({origin}); check the path or use a catalog name such as "
                         f"'{default_model_name()}'")
    return ModelFile(name=name, path=path, sha256=file_sha256(path))


def download_model(entry: CatalogEntry, *, progress: ProgressFn | None = None, timeout: float = 30.0) -> Path:
    """Stream the official asset into a temp file; it becomes the model only once size and sha256 match."""
    dest = model_dir() / entry.file
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelError(f"cannot create the model folder {dest.parent}: {e.strerror}; set OBS_RVM_MODEL_DIR to a "
                         f"writable folder") from e
    digest = hashlib.sha256()
    done = 0
    try:
        with urllib.request.urlopen(entry.url, timeout=timeout) as response, atomic_write(dest) as out:
            total = int(response.headers.get("Content-Length") or 0) or entry.size
            for block in iter(lambda: response.read(1 << 16), b""):
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress:
                    progress(done, total)
            _verify_download(entry, done, digest.hexdigest())
    except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
        reason = getattr(e, "reason", e)
        raise ModelError(
            f"could not download model '{entry.name}' from {entry.url}: {reason}. Check the network, or download the "
            f"file yourself and pass --model PATH (or set OBS_RVM_MODEL)"
        ) from e
    except OSError as e:
        raise ModelError(f"cannot write the model to {dest}: {e.strerror or e}; free some space or set "
                         f"OBS_RVM_MODEL_DIR to a writable folder") from e
    return dest


def _verify_download(entry: CatalogEntry, size: int, sha: str) -> None:
    """Raise (so the temp file is deleted) unless the bytes are what the catalog promises."""
    if entry.size is not None and size != entry.size:
        raise ModelError(f"download of '{entry.name}' is {size} bytes, expected {entry.size}: the file was deleted, "
                         f"try again")
    if entry.sha256 is not None and sha != entry.sha256:
        raise ModelError(f"sha256 mismatch for '{entry.name}' (got {sha}, expected {entry.sha256}): the file was "
                         f"deleted, try again")


def verification_note(entry: CatalogEntry) -> str:
    """Say plainly how strongly a catalog asset is checked, for `obs-rvm models` and the installer."""
    if entry.sha256:
        return "size and sha256 verified"
    if entry.size:
        return "sha256 not published yet: size verified"
    return "sha256 and size not published yet: only checked by loading it as an RVM model"
