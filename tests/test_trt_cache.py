"""The TensorRT engine cache: keys that change with everything that makes engines differ, and damaged files that are
rebuilt instead of being handed to TensorRT. Real files in a temporary folder; the builder is a plain function
because building needs a GPU (the cache layer, which is under test, never looks inside the bytes)."""

from __future__ import annotations

import logging
import os
from dataclasses import replace

import pytest

from obs_rvm.engines import tensorrt as trt_backend
from obs_rvm.engines.gpu import GpuInfo
from obs_rvm.engines.trt_cache import FORMAT, MAGIC, CorruptEntry, EngineCache, cache_key, pack, unpack
from obs_rvm.graph import GraphSpec, Variant, prepare
from obs_rvm.models import resolve_model

GPU = GpuInfo("NVIDIA GeForce RTX 2060 SUPER", (7, 5))
FIELDS = {"gpu": GPU.name, "compute_capability": "7.5", "tensorrt": "10.16.1.11", "width": 1920, "height": 1080}
PAYLOAD = bytes(range(256)) * 300


class Builder:
    """Stands in for TensorRT's builder: returns fresh bytes and counts calls."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> bytes:
        self.calls += 1
        return PAYLOAD + self.calls.to_bytes(4, "little")


def test_build_once_then_hit(tmp_path):
    cache, build = EngineCache(tmp_path), Builder()
    first, built = cache.get_or_build(FIELDS, build)
    assert built and build.calls == 1
    again, built = cache.get_or_build(FIELDS, build)
    assert not built and build.calls == 1 and again == first
    assert [p.name for p in tmp_path.iterdir()] == [f"{cache_key(FIELDS)}.engine"]  # no temp files left behind
    assert cache.path(FIELDS).read_bytes().startswith(MAGIC)


def _damage(data: bytes, how: str) -> bytes:
    meta_length = int.from_bytes(data[len(MAGIC) + 4:len(MAGIC) + 8], "little")
    meta_end = len(MAGIC) + 8 + meta_length  # then 8 bytes of payload length, 32 of sha256, the payload
    return {
        "empty": b"",
        "garbage": os.urandom(len(data)),
        "raw engine": data[meta_end + 40:],  # a bare serialized engine, as another tool would write it
        "truncated": data[: len(data) // 2],
        "header only": data[:meta_end],
        "flipped payload byte": data[:-100] + bytes([data[-100] ^ 0xFF]) + data[-99:],
        "flipped checksum": data[: meta_end + 8] + bytes([data[meta_end + 8] ^ 1]) + data[meta_end + 9:],
        "newer format": MAGIC + (FORMAT + 1).to_bytes(4, "little") + data[len(MAGIC) + 4:],
        "appended junk": data + b"junk",
    }[how]


@pytest.mark.parametrize("how", ["empty", "garbage", "raw engine", "truncated", "header only", "flipped payload byte",
                                 "flipped checksum", "newer format", "appended junk"])
def test_damaged_file_is_rebuilt_not_used(tmp_path, caplog, how):
    cache, build = EngineCache(tmp_path), Builder()
    original, _ = cache.get_or_build(FIELDS, build)
    path = cache.path(FIELDS)
    path.write_bytes(_damage(path.read_bytes(), how))
    with caplog.at_level(logging.WARNING, logger="obs_rvm"):
        payload, built = cache.get_or_build(FIELDS, build)
    assert built and build.calls == 2 and payload != original
    assert "rebuilding" in caplog.text and path.name in caplog.text
    assert unpack(path.read_bytes(), FIELDS) == payload  # the rebuilt entry replaced the damaged one


def test_entry_written_for_other_fields_is_refused(tmp_path):
    cache = EngineCache(tmp_path)
    other = {**FIELDS, "width": 1280}
    cache.path(FIELDS).parent.mkdir(parents=True, exist_ok=True)
    cache.path(FIELDS).write_bytes(pack(PAYLOAD, other))  # e.g. a file copied between machines under a wrong name
    with pytest.raises(CorruptEntry, match="different width"):
        unpack(cache.path(FIELDS).read_bytes(), FIELDS)
    assert cache.load(FIELDS) is None and not cache.path(FIELDS).exists()


def test_discard_forces_a_rebuild(tmp_path):
    """What the engine does when TensorRT refuses an intact file (e.g. after a driver update)."""
    cache, build = EngineCache(tmp_path), Builder()
    cache.get_or_build(FIELDS, build)
    cache.discard(FIELDS)
    _, built = cache.get_or_build(FIELDS, build)
    assert built and build.calls == 2


def test_unwritable_cache_still_returns_the_engine(tmp_path, caplog):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the cache folder should be")
    cache, build = EngineCache(blocker / "engines"), Builder()
    with caplog.at_level(logging.WARNING, logger="obs_rvm"):
        payload, built = cache.get_or_build(FIELDS, build)
    assert built and payload.startswith(PAYLOAD)
    assert "rebuilt next time" in caplog.text


def test_engine_key_covers_everything_that_makes_engines_differ(monkeypatch):
    model = resolve_model(None)
    graph = prepare(model, GraphSpec(64, 48, 0.5, Variant.BLUR))
    base = trt_backend.engine_fields(graph, GPU, "10.16.1.11")
    assert base == trt_backend.engine_fields(prepare(model, GraphSpec(64, 48, 0.5, Variant.BLUR)), GPU, "10.16.1.11")
    assert {"gpu", "compute_capability", "tensorrt", "model_sha256", "width", "height", "downsample_ratio",
            "background", "precision", "graph_version"} <= set(base)
    variants = [
        trt_backend.engine_fields(graph, replace(GPU, name="NVIDIA GeForce RTX 4090"), "10.16.1.11"),
        trt_backend.engine_fields(graph, replace(GPU, compute_capability=(8, 6)), "10.16.1.11"),
        trt_backend.engine_fields(graph, GPU, "11.4.0.106"),
        trt_backend.engine_fields(replace(graph, model_sha256="0" * 64), GPU, "10.16.1.11"),
    ]
    for spec in (GraphSpec(64, 64, 0.5, Variant.BLUR), GraphSpec(48, 48, 0.5, Variant.BLUR),
                 GraphSpec(64, 48, 0.25, Variant.BLUR), GraphSpec(64, 48, 0.5, Variant.REPLACE),
                 GraphSpec(64, 48, 0.5, Variant.BLUR, fp16=True), GraphSpec(64, 48, 0.5, Variant.BLUR, matte_grow=-2),
                 GraphSpec(64, 48, 0.5, Variant.BLUR, feather=3)):
        variants.append(trt_backend.engine_fields(replace(graph, spec=spec), GPU, "10.16.1.11"))
    monkeypatch.setattr(trt_backend, "GRAPH_VERSION", trt_backend.GRAPH_VERSION + 1)
    variants.append(trt_backend.engine_fields(graph, GPU, "10.16.1.11"))
    keys = {cache_key(fields) for fields in variants}
    assert len(keys) == len(variants) and cache_key(base) not in keys


def test_timing_cache_key_is_per_gpu_and_version():
    a = trt_backend.timing_cache_fields(GPU, "10.16.1.11")
    assert cache_key(a) != cache_key(trt_backend.timing_cache_fields(GPU, "11.4.0.106"))
    assert cache_key(a) != cache_key(trt_backend.timing_cache_fields(replace(GPU, compute_capability=(8, 9)), "10.16"))


def test_default_cache_lives_under_the_obs_rvm_cache_dir(monkeypatch, tmp_path):
    monkeypatch.setenv("OBS_RVM_CACHE_DIR", str(tmp_path))
    assert EngineCache().folder == tmp_path / "engines"
