"""The model catalog, and turning a model name or path into a verified local file.

Users name a model from the catalog (an official RVM release asset downloaded once, checked by size and sha256, or
the one bundled in the package) or give a path. With no name, ONE rule picks the model everywhere (CLI, camera, OBS
filter, installer, doctor): the official default where it is downloaded or can be downloaded now, else the bundled
fallback, said once per process. A name or path someone gave is never swapped for another model.

`OBS_RVM_MODEL` (a file) replaces every catalog name: tests and offline machines use it. A model file given to the
installer (environment.json "model") replaces the default model (no name, or the default's name; other catalog names
still mean their own asset), so OBS started from the desktop, without OBS_RVM_MODEL, uses it too.
`OBS_RVM_RELEASE_URL` replaces the official release folder the assets download from (a mirror, or tests).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path

from . import bundled
from .environment import environment_file, installed_model
from .errors import ModelError
from .paths import atomic_write, cache_dir, model_dir

log = logging.getLogger("obs_rvm")

ProgressFn = Callable[[int, int | None], None]
"""Called with (bytes done, bytes total or None) while downloading."""


CONNECT_TIMEOUT = 5.0
"""Seconds to wait for the release server (or proxy) to answer, name lookup included: offline must not stall."""


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    file: str
    url: str | None
    size: int | None
    sha256: str | None
    precision: str
    backbone: str
    license: str
    bundled: str | None = None
    """Path inside the package of the packed model shipped with obs-rvm (then there is no url)."""

    def local_path(self) -> Path:
        """Where the model file is (or goes): the models folder, or for the bundled model its restored copy."""
        return cache_dir("models") / self.file if self.bundled else model_dir() / self.file


@dataclass(frozen=True)
class ModelFile:
    """A model ready to load: where it is and the content hash that keys every derived cache."""

    name: str
    path: Path
    sha256: str
    origin: str = field(default="", compare=False)
    """Why this model, in words (for `obs-rvm doctor` and the installer)."""


def _manifest_path() -> Path:
    # Wheels carry the manifest inside the package; a source checkout keeps it in models/.
    packaged = Path(__file__).with_name("manifest.json")
    return packaged if packaged.exists() else Path(__file__).resolve().parent.parent / "models" / "manifest.json"


@lru_cache(maxsize=1)
def _manifest() -> dict:
    return json.loads(_manifest_path().read_text())


def catalog() -> dict[str, CatalogEntry]:
    entries = {name: CatalogEntry(name=name, **entry) for name, entry in _manifest()["models"].items()}
    base = os.environ.get("OBS_RVM_RELEASE_URL", "").strip().rstrip("/")
    if base:
        entries = {n: replace(e, url=f"{base}/{e.file}") if e.url else e for n, e in entries.items()}
    return entries


def default_model_name() -> str:
    """The official model used when none is named (where it is downloaded or downloadable)."""
    return _manifest()["default"]


def fallback_model_name() -> str:
    """The bundled model used instead of the default when that can be neither found nor downloaded."""
    return _manifest()["fallback"]


def fallback_note() -> str:
    return (f"using the bundled model: run `obs-rvm models download {default_model_name()}` for the official fp32 "
            f"weights")


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
    """Return a verified local model for a catalog name, a file path, or None (the default model, see the module)."""
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
    if spec is None:
        return default_model(download=download, progress=progress)
    entries = catalog()
    if spec not in entries:
        raise ModelError(f"unknown model '{spec}': choose one of {', '.join(entries)} or give a path to an .onnx file")
    entry = entries[spec]
    if entry.bundled:
        return _bundled_model(entry, origin="named")
    if not entry.local_path().exists():
        if not download:
            raise ModelError(f"model '{spec}' is not downloaded yet: run `obs-rvm models download {spec}`")
        download_model(entry, progress=progress)
    return _downloaded_model(entry, origin="named")


_default_lock = threading.Lock()
_failed: dict[str, str] = {}
"""url -> why this process could not download it: the default is tried once, then the bundled model is used."""
_announced: set[str] = set()


def download_failure(entry: CatalogEntry) -> str | None:
    """Why this process could not download `entry` for the default rule, if it tried and failed."""
    return _failed.get(entry.url or "")


def default_model(*, download: bool = True, progress: ProgressFn | None = None) -> ModelFile:
    """The default rule alone: the official model where it is downloaded or downloadable, else the bundled one.
    A failed download is tried once per process; the switch to the bundled model is logged once."""
    entry = catalog()[default_model_name()]
    with _default_lock:  # two OBS filters starting together download once
        if entry.local_path().exists():
            return _downloaded_model(entry, origin="the default model, downloaded")
        url = entry.url or ""
        if download and url not in _failed:
            try:
                download_model(entry, progress=progress)
                return _downloaded_model(entry, origin="the default model, downloaded just now")
            except ModelError as e:
                _failed[url] = str(e)
        why = f"not downloaded and cannot be downloaded now: {_failed[url]}" if url in _failed else "not downloaded"
        if url not in _announced:
            log.info("the official model '%s' is %s", entry.name, why)
            log.warning(fallback_note())
            _announced.add(url)
        fallback = catalog()[fallback_model_name()]
        return _bundled_model(fallback, origin=f"bundled with obs-rvm, used because the official model "
                                               f"'{entry.name}' is {why}")


def _downloaded_model(entry: CatalogEntry, origin: str) -> ModelFile:
    path = entry.local_path()
    sha = file_sha256(path)
    if entry.sha256 and sha != entry.sha256:
        raise ModelError(
            f"model file {path} does not match the published sha256 (got {sha[:12]}…, expected {entry.sha256[:12]}…): "
            f"delete it and run `obs-rvm models download {entry.name}`"
        )
    return ModelFile(name=entry.name, path=path, sha256=sha, origin=origin)


def _bundled_model(entry: CatalogEntry, origin: str) -> ModelFile:
    """The bundled model as a real .onnx file: restored into the cache once, reused while its sha256 holds."""
    assert entry.bundled and entry.sha256
    path = entry.local_path()
    if not (path.is_file() and file_sha256(path) == entry.sha256):
        bundled.restore(Path(bundled.__file__).parent / entry.bundled, path, entry.sha256)
    return ModelFile(name=entry.name, path=path, sha256=entry.sha256, origin=origin)


def _local_file(path: Path, name: str, origin: str = "model path") -> ModelFile:
    if not path.is_file():
        raise ModelError(f"model file not found: {path} ({origin}); check the path or use a catalog name such as "
                         f"'{default_model_name()}'")
    return ModelFile(name=name, path=path, sha256=file_sha256(path), origin=origin)


def unreachable(url: str, timeout: float = CONNECT_TIMEOUT) -> str | None:
    """Why the server of `url` (or the proxy urllib would use for it) does not accept a connection within `timeout`
    seconds; None when it does. The name lookup runs inside the limit too, so an offline machine knows in seconds."""
    parts = urllib.parse.urlsplit(url)
    host, port = parts.hostname, parts.port or (443 if parts.scheme == "https" else 80)
    if not host:
        return None
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(host):
        proxied = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
        host, port = proxied.hostname or host, proxied.port or 80
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except TimeoutError:
            pass  # no answer: said below with the limit, as when the wait ends first (on a busy machine it may not)
        except OSError as e:
            outcome.append(f"{host}:{port}: {e.strerror or e}")

    probe = threading.Thread(target=connect, name="obs-rvm-connect", daemon=True)
    probe.start()
    probe.join(timeout)
    return outcome[0] if outcome else f"{host}:{port} did not answer within {timeout:g} s"


def download_model(entry: CatalogEntry, *, progress: ProgressFn | None = None, timeout: float = 30.0,
                   connect_timeout: float = CONNECT_TIMEOUT) -> Path:
    """Stream the official asset into a temp file; it becomes the model only once size and sha256 match."""
    if not entry.url:
        raise ModelError(f"model '{entry.name}' ships with obs-rvm: there is nothing to download")
    dest = entry.local_path()
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ModelError(f"cannot create the model folder {dest.parent}: {e.strerror}; set OBS_RVM_MODEL_DIR to a "
                         f"writable folder") from e
    digest = hashlib.sha256()
    done = 0
    try:
        reason = unreachable(entry.url, connect_timeout)
        if reason:
            raise urllib.error.URLError(reason)
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
    if entry.bundled:
        return "bundled with obs-rvm, restored losslessly and sha256 verified"
    if entry.sha256:
        return "size and sha256 verified"
    if entry.size:
        return "sha256 not published yet: size verified"
    return "sha256 and size not published yet: only checked by loading it as an RVM model"
