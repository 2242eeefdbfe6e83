"""On-disk cache of built TensorRT engines (and TensorRT's timing cache), safe against damaged files.

Building an engine takes tens of seconds, so engines are kept under a key of everything that makes one engine differ
from another (GPU, compute capability, TensorRT version, model, frame size, ratio, background variant, precision,
graph version). TensorRT must never be handed a truncated or foreign file: each entry wraps the serialized bytes in
a small header (magic, format, the key's fields as JSON, length, sha256) that is checked before the bytes are used.
Anything that fails the check is deleted and rebuilt, never fatal. Pure Python: testable without a GPU.
"""

from __future__ import annotations

import hashlib
import json
import logging
import struct
from collections.abc import Callable, Mapping
from pathlib import Path

from ..paths import atomic_write, cache_dir

log = logging.getLogger("obs_rvm")

MAGIC = b"OBS-RVM-TRT\n"
FORMAT = 1
_LENGTHS = struct.Struct("<II")  # format, metadata length
_PAYLOAD = struct.Struct("<Q")  # payload length; then 32 bytes of sha256, then the payload


class CorruptEntry(Exception):
    """A cache file that must not be used; the message says why."""


def cache_key(fields: Mapping[str, object]) -> str:
    return hashlib.sha256(json.dumps(dict(fields), sort_keys=True).encode()).hexdigest()[:32]


def pack(payload: bytes, fields: Mapping[str, object]) -> bytes:
    meta = json.dumps(dict(fields), sort_keys=True).encode()
    return (MAGIC + _LENGTHS.pack(FORMAT, len(meta)) + meta + _PAYLOAD.pack(len(payload))
            + hashlib.sha256(payload).digest() + payload)


def unpack(data: bytes, fields: Mapping[str, object]) -> bytes:
    """The payload of a cache file written by `pack` for exactly these fields; CorruptEntry otherwise."""
    if not data.startswith(MAGIC):
        raise CorruptEntry("not an obs-rvm engine file")
    pos = len(MAGIC)
    if len(data) < pos + _LENGTHS.size:
        raise CorruptEntry("truncated header")
    fmt, meta_len = _LENGTHS.unpack_from(data, pos)
    if fmt != FORMAT:
        raise CorruptEntry(f"cache format {fmt}, expected {FORMAT}")
    pos += _LENGTHS.size
    try:
        meta = json.loads(data[pos:pos + meta_len])
    except ValueError:
        raise CorruptEntry("unreadable metadata") from None
    expected = json.loads(json.dumps(dict(fields)))  # tuples become lists, as they were stored
    if meta != expected:
        if not isinstance(meta, dict):
            raise CorruptEntry("unreadable metadata")
        differs = sorted(k for k in set(meta) | set(expected) if meta.get(k) != expected.get(k))
        raise CorruptEntry(f"built for a different {', '.join(differs)}")
    pos += meta_len
    if len(data) < pos + _PAYLOAD.size + 32:
        raise CorruptEntry("truncated header")
    (length,) = _PAYLOAD.unpack_from(data, pos)
    pos += _PAYLOAD.size
    digest, payload = data[pos:pos + 32], data[pos + 32:]
    if len(payload) != length:
        raise CorruptEntry(f"payload is {len(payload)} bytes, expected {length}")
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptEntry("checksum mismatch")
    return payload


class EngineCache:
    """A folder of checksummed entries, one file per key (default: the user cache's `engines` folder)."""

    def __init__(self, folder: Path | None = None, suffix: str = ".engine") -> None:
        self.folder = folder or cache_dir("engines")
        self.suffix = suffix

    def path(self, fields: Mapping[str, object]) -> Path:
        return self.folder / f"{cache_key(fields)}{self.suffix}"

    def load(self, fields: Mapping[str, object]) -> bytes | None:
        """The cached payload, or None if there is none or it was unusable (then it is deleted and logged)."""
        path = self.path(fields)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        except OSError as e:
            log.warning("cannot read cached engine %s (%s): rebuilding it", path, e)
            return None
        try:
            return unpack(data, fields)
        except CorruptEntry as e:
            log.warning("cached engine %s is unusable (%s): rebuilding it", path.name, e)
            self.discard(fields)
            return None

    def store(self, fields: Mapping[str, object], payload: bytes) -> Path:
        path = self.path(fields)
        with atomic_write(path) as f:
            f.write(pack(payload, fields))
        return path

    def discard(self, fields: Mapping[str, object]) -> None:
        self.path(fields).unlink(missing_ok=True)

    def get_or_build(self, fields: Mapping[str, object], build: Callable[[], bytes]) -> tuple[bytes, bool]:
        """(payload, built): the cached entry if it is intact, else `build()`'s result, stored for next time.

        A cache that cannot be written (read-only, disk full) costs a rebuild next time, not this run.
        """
        payload = self.load(fields)
        if payload is not None:
            return payload, False
        payload = build()
        try:
            self.store(fields, payload)
        except OSError as e:
            log.warning("cannot write the engine cache in %s (%s): the engine will be rebuilt next time",
                        self.folder, e)
        return payload, True
