"""Model catalog, download verification and model validation, with real files and a real local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import json
import threading
from dataclasses import replace
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from obs_rvm.errors import ModelError
from obs_rvm.graph import load_rvm
from obs_rvm.models import catalog, default_model_name, download_model, resolve_model

from paths import MODEL


@pytest.fixture
def http_server(tmp_path: Path):
    """Serve tmp_path/www over HTTP on 127.0.0.1 (the real urllib download path, no internet needed)."""
    root = tmp_path / "www"
    root.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def log_message(self, *args):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def test_catalog_has_the_official_release_assets():
    entries = catalog()
    assert {"mobilenetv3", "mobilenetv3-fp16", "resnet50", "resnet50-fp16"} <= set(entries)
    assert default_model_name() == "mobilenetv3"
    for entry in entries.values():
        assert entry.url == f"https://github.com/PeterL1n/RobustVideoMatting/releases/download/v1.0.0/{entry.file}"
        assert entry.license == "GPL-3.0"
    assert entries["mobilenetv3"].sha256 == "88d4531297118f595bf2fd60f6f566aec2e559393802d1f436c380f0cbbd2828"
    assert entries["mobilenetv3"].size == 14_975_696


def test_download_verifies_and_renames(clean_model_env, http_server):
    root, base = http_server
    payload = MODEL.read_bytes()
    (root / "good.onnx").write_bytes(payload)
    entry = replace(catalog()["mobilenetv3"], file="good.onnx", url=f"{base}/good.onnx", size=len(payload),
                    sha256=hashlib.sha256(payload).hexdigest())
    seen = []
    path = download_model(entry, progress=lambda done, total: seen.append((done, total)))
    assert path == clean_model_env / "good.onnx" and path.read_bytes() == payload
    assert seen[-1] == (len(payload), len(payload))
    assert [p.name for p in clean_model_env.iterdir()] == ["good.onnx"], "no temp file left behind"


def test_checksum_mismatch_deletes_the_download(clean_model_env, http_server):
    root, base = http_server
    (root / "bad.onnx").write_bytes(b"x" * 1000)
    entry = replace(catalog()["mobilenetv3"], file="bad.onnx", url=f"{base}/bad.onnx", size=1000, sha256="0" * 64)
    with pytest.raises(ModelError, match="sha256 mismatch.*deleted"):
        download_model(entry)
    assert list(clean_model_env.iterdir()) == []


def test_size_mismatch_deletes_the_download(clean_model_env, http_server):
    root, base = http_server
    (root / "short.onnx").write_bytes(b"x" * 10)
    entry = replace(catalog()["mobilenetv3"], file="short.onnx", url=f"{base}/short.onnx", size=1000, sha256=None)
    with pytest.raises(ModelError, match="10 bytes, expected 1000"):
        download_model(entry)
    assert list(clean_model_env.iterdir()) == []


def test_no_network_is_a_clear_error(clean_model_env):
    entry = replace(catalog()["mobilenetv3"], url="http://127.0.0.1:9/rvm.onnx")
    with pytest.raises(ModelError, match="could not download.*--model PATH"):
        download_model(entry, timeout=2)
    assert not clean_model_env.exists() or not any(clean_model_env.iterdir())


def test_existing_file_with_wrong_hash_is_refused(clean_model_env):
    clean_model_env.mkdir(parents=True)
    (clean_model_env / catalog()["mobilenetv3"].file).write_bytes(b"tampered")
    with pytest.raises(ModelError, match="does not match the published sha256"):
        resolve_model("mobilenetv3")


def test_not_downloaded_without_download_permission(clean_model_env):
    with pytest.raises(ModelError, match="obs-rvm models download mobilenetv3"):
        resolve_model("mobilenetv3", download=False)


def test_unknown_name_and_missing_path(clean_model_env):
    with pytest.raises(ModelError, match="unknown model 'nope'.*mobilenetv3"):
        resolve_model("nope")
    with pytest.raises(ModelError, match="model file not found"):
        resolve_model("/no/such/model.onnx")


def test_env_override_and_explicit_path():
    assert resolve_model().path == MODEL  # conftest sets OBS_RVM_MODEL
    assert resolve_model("resnet50").path == MODEL, "OBS_RVM_MODEL replaces every catalog name"
    assert resolve_model(str(MODEL)).sha256 == "1a5954fcf3232d033fb95d4418c3b080aba217f95285ab7e48f873152eba52df"


def test_truncated_model_is_reported_as_corrupt(tmp_path):
    broken = tmp_path / "truncated.onnx"
    broken.write_bytes(MODEL.read_bytes()[:100_000])
    with pytest.raises(ModelError, match="not a readable ONNX model.*corrupt or truncated"):
        load_rvm(broken)


def test_onnx_without_rvm_io_is_refused(tmp_path):
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "other.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(ModelError, match="not a Robust Video Matting model: missing src"):
        load_rvm(path)


def test_manifest_is_valid_json_with_every_field():
    manifest = json.loads((Path(__file__).parent.parent / "models" / "manifest.json").read_text())
    for entry in manifest["models"].values():
        assert set(entry) == {"file", "url", "size", "sha256", "precision", "backbone", "license"}
