"""UI text in OBS's convention: `Key="Value"` lines in locale/<lang>.ini, the user's OBS language first, then en-US."""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

FOLDER = Path(__file__).with_name("locale")
DEFAULT = "en-US"
_LINE = re.compile(r'^\s*([A-Za-z0-9_.-]+)\s*=\s*"(.*)"\s*$')


def read_ini(path: Path) -> dict[str, str]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError:
        return {}
    return {m.group(1): m.group(2).replace("\\n", "\n") for m in map(_LINE.match, lines) if m}


@lru_cache(maxsize=4)
def table(locale: str) -> dict[str, str]:
    return {**read_ini(FOLDER / f"{DEFAULT}.ini"), **read_ini(FOLDER / f"{locale}.ini")}


class Text:
    """Looks keys up in one language; unknown keys show as themselves (visible, never a crash)."""

    def __init__(self, locale: str = DEFAULT) -> None:
        self._table = table(locale or DEFAULT)

    def __call__(self, key: str) -> str:
        return self._table.get(key, key)
