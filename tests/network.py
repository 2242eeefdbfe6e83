"""Whether the tests that install packages can reach pip's package index (PyPI, or the index pip is set up to use):
looked up once per run. Without it those tests skip and say why (conftest's `pypi` fixture) instead of failing."""

from __future__ import annotations

import functools
import http.client
import os
import re
import ssl
import subprocess
import sys
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

PYPI = "https://pypi.org/simple/"
TIMEOUT_S = 15.0


def pip_index() -> str:
    """The index pip installs from on this machine: $PIP_INDEX_URL, else pip's configuration, else PyPI."""
    if os.environ.get("PIP_INDEX_URL", "").strip():
        return os.environ["PIP_INDEX_URL"].split()[0]
    try:
        listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"], capture_output=True, text=True,
                                timeout=60).stdout
    except (OSError, subprocess.TimeoutExpired):
        listed = ""
    configured = re.findall(r"^\S*\.index-url='([^']+)'$", listed, re.MULTILINE)
    return configured[-1].split()[0] if configured else PYPI


@functools.cache
def index_unreachable(index: str | None = None) -> str | None:
    """Why pip's index cannot be reached from here (no answer within TIMEOUT_S), or None when it answers."""
    index = index or pip_index()
    parts = urllib.parse.urlsplit(index)
    if parts.scheme == "file":
        return None if Path(urllib.request.url2pathname(parts.path)).is_dir() else f"{index} is not a folder"
    page = index.rstrip("/") + "/pip/"  # the project page pip itself reads first
    context = ssl.create_default_context(cafile=os.environ.get("PIP_CERT") or None)
    try:
        with urllib.request.urlopen(page, timeout=TIMEOUT_S, context=context):
            return None
    except urllib.error.HTTPError:
        return None  # the index answered (a 404 is still an answer)
    except (OSError, http.client.HTTPException, ValueError) as e:
        reason = getattr(e, "reason", None) or e
        return f"{index} cannot be reached from here ({reason})"
