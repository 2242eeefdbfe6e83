"""Shared test setup: real clips (and the model file the bundled one is made from) from the shared data folder, an
isolated cache, and no model downloads.

The data folder defaults to ../shared beside the checkout; OBS_RVM_TEST_DATA overrides it. Without it the tests
cannot run at all, so a missing folder fails loudly instead of skipping everything.

The order: pytest-randomly (in the test extras) shuffles the suite, with its seed in the header and again at the end
(`--randomly-seed=N` repeats an order, `-p no:randomly` turns shuffling off). The OBS tests (marker `obs`) go back to
file order among themselves, as their module-scoped OBS fixtures expect; each module's tests stay together.

The default model is what a user gets offline: the release URL points at a local port that refuses connections
and the models folder is empty, so every test process (and every program it starts) keys with the bundled
mobilenetv3-web, which is byte for byte the shared test model. OBS_RVM_MODEL set before pytest starts still
replaces it (a run against another model file).
"""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

import network
from paths import MODEL

if not MODEL.is_file():
    raise pytest.UsageError(f"test model not found at {MODEL}: set OBS_RVM_TEST_DATA to the shared data folder")

_CLOSED = socket.socket()
_CLOSED.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused at once, and no one else gets it
CLOSED_URL = f"http://127.0.0.1:{_CLOSED.getsockname()[1]}/release"
"""A release URL no download can reach, as on a machine without internet."""

os.environ["OBS_RVM_RELEASE_URL"] = CLOSED_URL
os.environ["OBS_RVM_MODEL_DIR"] = tempfile.mkdtemp(prefix="obs-rvm-test-models-")
os.environ.setdefault("OBS_RVM_CACHE_DIR", str(Path(os.environ.get("TMPDIR", "/tmp")) / "obs-rvm-test-cache"))


@pytest.fixture
def clean_model_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No model override, no installer record and an empty model folder: what a user without the test model sees."""
    monkeypatch.delenv("OBS_RVM_MODEL", raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    monkeypatch.setenv("OBS_RVM_MODEL_DIR", str(tmp_path / "models"))
    return tmp_path / "models"


@pytest.fixture(autouse=True)
def environment_left_as_found(request: pytest.FixtureRequest):
    """A test that changes this process's environment without monkeypatch fails itself, instead of a later test
    in some shuffled order (soak_obs once left OBS_RVM_MODEL set: the bundled-model test failed 20 tests later)."""
    before = dict(os.environ)
    yield
    keys = (before.keys() | os.environ.keys()) - {"PYTEST_CURRENT_TEST"}  # pytest's own, changed for every phase
    changed = sorted(k for k in keys if before.get(k) != os.environ.get(k))
    assert not changed, f"{request.node.nodeid} left the environment changed: {', '.join(changed)}"


@pytest.fixture(scope="session")
def pypi() -> str:
    """For the tests that install packages: pip's index, looked up once; where it cannot be reached (offline, behind
    a firewall) they skip, saying so."""
    why = network.index_unreachable()
    if why:
        pytest.skip(f"needs pip's package index: {why}")
    return network.pip_index()


# -- the order: shuffled, the OBS tests in file order ----------------------------------------------------------------

FILE_ORDER = pytest.StashKey[int]()
"""An item's place in file order, recorded as it is collected (before pytest-randomly shuffles)."""
_collected = 0


def pytest_itemcollected(item: pytest.Item) -> None:
    global _collected
    item.stash[FILE_ORDER] = _collected
    _collected += 1


def is_obs(item: pytest.Item) -> bool:
    return item.get_closest_marker("obs") is not None


def in_file_order(entries: list, chosen) -> list:
    """`entries` (items, or lists of items) with those `chosen` picks put back in file order, in the places they
    hold now; the others stay where they are."""
    def place(entry) -> int:
        return min(item.stash[FILE_ORDER] for item in (entry if isinstance(entry, list) else [entry]))

    places = [i for i, entry in enumerate(entries) if chosen(entry)]
    result = list(entries)
    for i, entry in zip(places, sorted((entries[i] for i in places), key=place)):
        result[i] = entry
    return result


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """After pytest-randomly's shuffle (its hook wraps this one; modules stay whole): the modules that have OBS
    tests, and the OBS tests within each module, go back to file order in the places the shuffle gave them. Every
    other test keeps its shuffled place; without pytest-randomly nothing moves."""
    modules: list[list[pytest.Item]] = []
    for item in items:
        if modules and modules[-1][0].path == item.path:
            modules[-1].append(item)
        else:
            modules.append([item])
    modules = in_file_order(modules, lambda module: any(map(is_obs, module)))
    items[:] = [item for module in modules for item in in_file_order(module, is_obs)]
    _obs_tests.update(item.nodeid for item in items if is_obs(item))


_obs_tests: set[str] = set()
_parts: dict[str, list] = {}
"""Part of the suite -> [tests, seconds of set-up, call and teardown]."""


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    obs = report.nodeid in _obs_tests
    part = _parts.setdefault("OBS tests (marker obs)" if obs else "the other tests", [0, 0.0])
    part[0] += report.when == "teardown"
    part[1] += report.duration


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    """How long each part took, and the seed again (the header's scrolled away by now)."""
    shuffled = config.pluginmanager.hasplugin("randomly") and config.getoption("randomly_reorganize", False)
    seed = config.getoption("randomly_seed", None)
    terminalreporter.write_sep("-", f"order: shuffled by pytest-randomly, --randomly-seed={seed} repeats it" if shuffled
                               else "order: file order (pytest-randomly off)")
    for part, (count, seconds) in sorted(_parts.items(), reverse=True):
        if count:
            terminalreporter.write_line(f"{part}: {count} in {seconds:.0f} s")
