"""Model catalog, download verification and model validation, with real files and a real local HTTP server."""

from __future__ import annotations

import hashlib
import http.server
import json
import logging
import socket
import threading
import time
import zipfile
from dataclasses import replace
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from obs_rvm import bundled, models
from obs_rvm.errors import ModelError
from obs_rvm.graph_build import load_rvm
from obs_rvm.models import catalog, default_model_name, download_model, fallback_note, resolve_model

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


def test_catalog_has_the_official_release_assets(monkeypatch):
    monkeypatch.delenv("OBS_RVM_RELEASE_URL")  # conftest points it at a closed port
    entries = catalog()
    assert {"mobilenetv3", "mobilenetv3-fp16", "resnet50", "resnet50-fp16"} <= set(entries)
    assert default_model_name() == "mobilenetv3"
    for entry in entries.values():
        if not entry.bundled:
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


def test_env_override_and_explicit_path(monkeypatch):
    monkeypatch.setenv("OBS_RVM_MODEL", str(MODEL))
    assert resolve_model().path == MODEL
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
    fields = {"file", "url", "size", "sha256", "precision", "backbone", "license"}
    for entry in manifest["models"].values():
        assert set(entry) in (fields, fields | {"bundled"})
    assert manifest["models"][manifest["fallback"]]["bundled"]


# --- the bundled model and the default rule ---------------------------------------------------------------------


def test_bundled_model_restores_the_shared_file_byte_for_byte(monkeypatch, tmp_path):
    """Lossless: same bytes, so same sha256 (the graph caches' key) and the same output as the shared file."""
    monkeypatch.setenv("OBS_RVM_CACHE_DIR", str(tmp_path / "cache"))
    entry = catalog()["mobilenetv3-web"]
    packed = Path(bundled.__file__).parent / entry.bundled
    assert packed.stat().st_size < 4_000_000, "the bundle stays small (the repository limit is 16 MB)"
    model = resolve_model("mobilenetv3-web")
    assert model.path == tmp_path / "cache" / "models" / entry.file and model.path.read_bytes() == MODEL.read_bytes()
    assert model.sha256 == entry.sha256 == hashlib.sha256(MODEL.read_bytes()).hexdigest()
    before = model.path.stat().st_mtime_ns
    assert resolve_model("mobilenetv3-web").path.stat().st_mtime_ns == before, "restored once, then reused"
    model.path.write_bytes(b"damaged")
    assert resolve_model("mobilenetv3-web").path.read_bytes() == MODEL.read_bytes(), "a damaged copy is restored"


def test_a_damaged_bundle_is_refused_and_writes_nothing(tmp_path):
    packed = Path(bundled.__file__).parent / catalog()["mobilenetv3-web"].bundled
    broken = tmp_path / "broken.npz"
    with zipfile.ZipFile(packed) as src, zipfile.ZipFile(broken, "w") as dst:
        target = next(name for name in src.namelist() if name.startswith("table_"))
        for name in src.namelist():
            data = src.read(name)
            if name == target:
                data = data[:-4] + np.float32(1234.5).tobytes()  # one weight value changed
            dst.writestr(name, data)
    with pytest.raises(ModelError, match="restores to sha256.*reinstall obs-rvm"):
        bundled.restore(broken, tmp_path / "out.onnx", catalog()["mobilenetv3-web"].sha256)
    with pytest.raises(ModelError, match="missing from this installation"):
        bundled.restore(tmp_path / "gone.npz", tmp_path / "out.onnx", catalog()["mobilenetv3-web"].sha256)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.npz"]


def closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/release-{time.monotonic_ns()}"


def test_default_is_the_bundled_model_when_downloads_fail_said_once(clean_model_env, monkeypatch, caplog):
    monkeypatch.setenv("OBS_RVM_RELEASE_URL", closed_port_url())
    caplog.set_level(logging.INFO, logger="obs_rvm")
    first, second = resolve_model(), resolve_model(None)
    assert first.name == second.name == "mobilenetv3-web" and first.sha256 == catalog()["mobilenetv3-web"].sha256
    assert "cannot be downloaded now" in first.origin and "Connection refused" in first.origin
    notes = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert notes == [fallback_note()] == ["using the bundled model: run `obs-rvm models download mobilenetv3` for "
                                          "the official fp32 weights"]
    assert not clean_model_env.exists() or not any(clean_model_env.iterdir()), "no partial download left"


def test_a_named_model_is_never_replaced(clean_model_env, monkeypatch):
    monkeypatch.setenv("OBS_RVM_RELEASE_URL", closed_port_url())
    with pytest.raises(ModelError, match="could not download model 'mobilenetv3'.*Connection refused"):
        resolve_model("mobilenetv3")
    with pytest.raises(ModelError, match="not downloaded yet"):
        resolve_model("mobilenetv3", download=False)
    monkeypatch.setenv("OBS_RVM_MODEL", str(clean_model_env.parent / "missing.onnx"))
    with pytest.raises(ModelError, match="model file not found.*OBS_RVM_MODEL"):
        resolve_model()


def test_default_is_the_official_model_where_it_can_be_downloaded(clean_model_env, http_server, monkeypatch):
    """The official asset from a reachable release (a local server standing in for GitHub, with the served file's
    hash published in the catalog) is downloaded and used; once there, it is used without the network."""
    root, base = http_server
    official = catalog()["mobilenetv3"]
    payload = MODEL.read_bytes()[:-1] + b"\0"  # any bytes: the catalog below publishes their size and hash
    (root / official.file).write_bytes(payload)
    manifest = json.loads(json.dumps(models._manifest()))
    manifest["models"]["mobilenetv3"].update(size=len(payload), sha256=hashlib.sha256(payload).hexdigest())
    monkeypatch.setattr(models, "_manifest", lambda: manifest)
    monkeypatch.setenv("OBS_RVM_RELEASE_URL", base)
    model = resolve_model()
    assert model.name == "mobilenetv3" and model.path == clean_model_env / official.file
    assert model.path.read_bytes() == payload
    monkeypatch.setenv("OBS_RVM_RELEASE_URL", closed_port_url())
    assert resolve_model(download=False).path == clean_model_env / official.file, "downloaded: no network needed"


def test_release_url_override_keeps_the_file_names(monkeypatch):
    monkeypatch.setenv("OBS_RVM_RELEASE_URL", "http://mirror.example/rvm/")
    assert catalog()["resnet50"].url == "http://mirror.example/rvm/rvm_resnet50_fp32.onnx"
    assert catalog()["mobilenetv3-web"].url is None


@pytest.fixture
def stalled_server():
    """A local port whose connection queue is full: a connect to it hangs (like a dead network) instead of failing."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(0)
    filler = socket.create_connection(server.getsockname(), timeout=2)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect(server.getsockname())
        pytest.skip("this kernel accepts connections beyond the backlog: cannot make a connect hang")
    except TimeoutError:
        pass
    finally:
        probe.close()
    yield f"http://127.0.0.1:{server.getsockname()[1]}"
    filler.close()
    server.close()


SLACK_S = 10.0
"""Time allowed beyond a timeout for everything else a call does, on a busy or slow machine. A timeout that is not
honoured costs far more: urllib's 30 s read timeout, or minutes of the kernel's connect retries."""


def test_an_unanswered_download_gives_up_after_the_connect_timeout(clean_model_env, stalled_server, monkeypatch):
    """Each call waits the connect timeout it has (the message says which), and then gives up. Times are bounded by
    that timeout plus SLACK_S, and what this machine takes to find the bundled model, measured here."""
    monkeypatch.setenv("OBS_RVM_RELEASE_URL", stalled_server)
    start = time.monotonic()
    with pytest.raises(ModelError, match="could not download.*did not answer within 1 s"):
        download_model(catalog()["mobilenetv3"], connect_timeout=1)
    assert time.monotonic() - start < 1 + SLACK_S, "a 1 s connect timeout"

    start = time.monotonic()
    assert resolve_model(download=False).name == "mobilenetv3-web"  # restores the bundled model: CPU work, no wait
    own_work = time.monotonic() - start
    start = time.monotonic()
    assert resolve_model().name == "mobilenetv3-web"
    took = time.monotonic() - start
    why = models.download_failure(catalog()["mobilenetv3"]) or ""
    assert f"did not answer within {models.CONNECT_TIMEOUT:g} s" in why, "the default tried, with its connect timeout"
    assert took < models.CONNECT_TIMEOUT + own_work + SLACK_S, f"the default falls back in seconds, not {took:.0f} s"


def test_a_connect_that_times_out_first_still_names_the_limit(monkeypatch):
    """The probe's own connect timeout and the wait for it end together: on a busy machine the connect's may end
    first, and the reason is the same."""
    def times_out(address, timeout):
        raise TimeoutError("timed out")

    monkeypatch.setattr(models.socket, "create_connection", times_out)
    assert models.unreachable("http://127.0.0.1:9/release", 1) == "127.0.0.1:9 did not answer within 1 s"


def test_doctor_says_which_model_the_filter_uses_and_why(clean_model_env, http_server, monkeypatch):
    from obs_rvm.doctor import WARN, check_model

    monkeypatch.setenv("OBS_RVM_RELEASE_URL", closed_port_url())
    (check,) = check_model()
    assert check.status == WARN and "the filter uses the bundled mobilenetv3-web" in check.message
    assert "cannot be downloaded now" in check.message and "Connection refused" in check.message
    assert check.fix.startswith("obs-rvm models download mobilenetv3")
    monkeypatch.setenv("OBS_RVM_RELEASE_URL", http_server[1])
    (check,) = check_model()
    assert check.status == WARN and "downloads the official mobilenetv3 when it first starts" in check.message
    assert not any(clean_model_env.glob("*")), "the doctor itself downloads nothing"
