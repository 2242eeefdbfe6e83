"""The documentation stays true to the files and the code it describes.

README.md is short and points into docs/: a renamed heading, a moved screenshot or a new CLI option or filter setting
would otherwise leave a dead link or an undocumented feature that no reviewer notices. The lists checked here come
from the code itself (the argparse parser, the filter's default settings), so adding a feature without documenting it
fails this test.
"""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from urllib.parse import unquote

import pytest

from obs_rvm.cli import build_parser
from obs_rvm.obs import settings

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
DOCS = REPO / "docs"
PAGES = [README, *sorted(DOCS.glob("*.md"))]
README_LIMIT = 10 * 1024
"""The README is what a streamer reads to the end: the rest belongs in docs/."""

FENCE = re.compile(r"^[ \t]*(```|~~~).*?^[ \t]*\1", re.MULTILINE | re.DOTALL)
LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)
CODE_SPAN = re.compile(r"`([^`]+)`")
OPTION = re.compile(r"(?<![\w-])--?[A-Za-z][\w-]*")


def prose(text: str) -> str:
    """Markdown without fenced code blocks, whose brackets and hashes are code, not links or headings."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the rendered text, lower-cased, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = text.replace("`", "").replace("*", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every anchor a page offers, with GitHub's -1, -2 suffixes for repeated headings."""
    seen: dict[str, int] = {}
    result = set()
    for heading in HEADING.findall(prose(page.read_text(encoding="utf-8"))):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        result.add(base if count == 0 else f"{base}-{count}")
    return result


def local_links(page: Path) -> list[str]:
    """Relative link and image targets: what breaks when a file or a heading moves."""
    text = CODE_SPAN.sub("", prose(page.read_text(encoding="utf-8")))  # `[a](b)` in backticks is code, not a link
    targets = LINK.findall(text)
    return [t for t in targets if not re.match(r"^[a-z][a-z0-9+.-]*:", t, re.IGNORECASE)]


def shown(path: Path) -> str:
    """A path as a reader of the failure wants it: relative to the checkout where it is inside it."""
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def link_problem(page: Path, target: str) -> str | None:
    """Why a relative link from a page does not resolve, or None when it does."""
    path_part, _, fragment = target.partition("#")
    resolved = (page.parent / unquote(path_part)).resolve() if path_part else page
    if not resolved.exists():
        return f"{shown(page)}: {target}: no file {shown(resolved)}"
    if fragment and resolved.suffix == ".md" and unquote(fragment) not in anchors(resolved):
        return f"{shown(page)}: {target}: no heading #{fragment} in {shown(resolved)}"
    return None


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_links_and_images_resolve(page: Path) -> None:
    """A streamer following a link from the README must land on a file and heading that exist."""
    links = local_links(page)
    problems = [p for p in (link_problem(page, t) for t in links) if p]
    assert not problems, "\n".join(problems)


def test_link_check_catches_a_dead_link_and_anchor(tmp_path: Path) -> None:
    """The link check itself works: a missing file and a missing heading are both reported."""
    (tmp_path / "other.md").write_text("# Other page\n\n## A section\n", encoding="utf-8")
    page = tmp_path / "page.md"
    page.write_text("[ok](other.md#a-section) ![pic](missing.png) [bad](other.md#no-section)\n"
                    "```\n[in code](ignored.md)\n```\n`[span](z.md)`\n1. step\n   ```bash\n   ls [x](y.md)\n   ```\n",
                    encoding="utf-8")
    targets = local_links(page)
    assert targets == ["other.md#a-section", "missing.png", "other.md#no-section"]
    assert link_problem(page, "other.md#a-section") is None
    assert "no file" in (link_problem(page, "missing.png") or "")
    assert "no heading" in (link_problem(page, "other.md#no-section") or "")


def test_slugs_match_github() -> None:
    """Anchors as GitHub renders them, so a link that works here works on the project page."""
    assert slug("In OBS in five steps (Linux)") == "in-obs-in-five-steps-linux"
    assert slug("The OBS version matrix (scripts/obs_matrix.sh)") == "the-obs-version-matrix-scriptsobs_matrixsh"
    assert slug("obs-rvm `camera`, demo --camera") == "obs-rvm-camera-demo---camera"


def subcommands() -> dict[str, argparse.ArgumentParser]:
    """The real CLI's subcommands, read from the parser `obs-rvm` itself uses."""
    parser = build_parser()
    found = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    assert len(found) == 1, "obs-rvm's parser should have exactly one set of subcommands"
    return dict(found[0].choices)


def code_tokens(text: str) -> set[str]:
    """Options (-x, --long-name) and words in backticks outside code blocks: a usage line alone explains nothing."""
    tokens: set[str] = set()
    for span in CODE_SPAN.findall(prose(text)):
        tokens.update(OPTION.findall(span))
        tokens.update(re.findall(r"[\w-]+", span))
    return tokens


def undocumented(name: str, parser: argparse.ArgumentParser, text: str) -> list[str]:
    """What of one subcommand cli.md leaves out: its heading, an option, or a choice of a positional argument."""
    missing = []
    if not re.search(rf"^#+ .*\bobs-rvm {re.escape(name)}\b", text, re.MULTILINE):
        missing.append(f"a heading '## obs-rvm {name}'")
    tokens = code_tokens(text)
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        if action.option_strings:
            if not tokens.intersection(action.option_strings):
                missing.append(f"option {'/'.join(action.option_strings)}")
        elif action.choices:
            missing += [f"'{name} {choice}'" for choice in action.choices if str(choice) not in tokens]
    return missing


def test_every_cli_subcommand_is_documented() -> None:
    """Every subcommand of the real parser has its section in docs/cli.md, with each option in backticks."""
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    commands = subcommands()
    assert {"process", "camera", "doctor"} <= set(commands), "the parser was not read correctly"
    missing = {name: m for name, p in commands.items() if (m := undocumented(name, p, text))}
    assert not missing, f"docs/cli.md leaves out: {missing}"


def test_cli_check_catches_an_undocumented_option() -> None:
    """The CLI check itself works: a section without one of its options is reported."""
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    parser = subcommands()["bench"]
    assert undocumented("bench", parser, text) == []
    assert "option --rss-frames" in undocumented("bench", parser, text.replace("--rss-frames", "--rss-count"))
    assert undocumented("bench", parser, text.replace("## obs-rvm bench", "## benchmarks"))


def test_every_filter_setting_is_documented() -> None:
    """Every key the filter saves (what obs-websocket users type) appears in backticks in docs/obs.md."""
    spans = set(CODE_SPAN.findall(prose((DOCS / "obs.md").read_text(encoding="utf-8"))))
    keys = set(settings.defaults())
    assert {"background", "sync"} <= keys, "the settings were not read correctly"
    missing = sorted(keys - spans)
    assert not missing, f"docs/obs.md does not name these setting keys in backticks: {missing}"


def test_readme_is_short() -> None:
    """The README stays something a streamer reads to the end; details go to docs/."""
    size = README.stat().st_size
    assert size < README_LIMIT, f"README.md is {size} bytes: move detail into docs/ (limit {README_LIMIT})"
