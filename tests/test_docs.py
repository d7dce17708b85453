"""The README stays a front door, and no link in it or in docs/ points nowhere.

Every relative link in README.md and docs/*.md (files, images, and the #anchor of a
Markdown file) must resolve, so moving a section cannot leave a dead link behind."""

import re
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted([README, *(ROOT / "docs").glob("*.md")])

_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_FENCE = re.compile(r"^(```|~~~).*?^\1", flags=re.MULTILINE | re.DOTALL)
_CODE = re.compile(r"`[^`\n]*`")


def _prose(text: str) -> str:
    """The text without fenced blocks, so a link-like string in code is not a link."""
    return _FENCE.sub("", text)


def _links(path: Path) -> list[str]:
    """Link targets outside code: `![x](p.png)` in backticks is text, not a link."""
    return _LINK.findall(_CODE.sub("``", _prose(path.read_text())))


def _anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = heading.strip().lower().replace("`", "")
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    found: set[str] = set()
    seen: dict[str, int] = {}
    for match in re.finditer(r"^#{1,6} (.+)$", _prose(path.read_text()), flags=re.MULTILINE):
        slug = _anchor(match.group(1))
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        found.add(slug if count == 0 else f"{slug}-{count}")
    return found


def _is_relative(target: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*:", target, flags=re.IGNORECASE)


@pytest.mark.parametrize("page", DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    broken = []
    for target in _links(page):
        if not _is_relative(target):
            continue
        file_part, _, anchor = target.partition("#")
        linked = (page.parent / unquote(file_part)).resolve() if file_part else page
        if not linked.exists():
            broken.append(f"{target}: no such file")
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(f"{target}: no heading with that anchor")
    assert not broken, f"{page.relative_to(ROOT)}: {broken}"


def test_the_readme_is_a_front_door_with_the_two_commands() -> None:
    text = README.read_text()
    assert len(text.splitlines()) <= 260
    assert "uv run dashboard" in text
    assert "uv run pytest" in text


def test_the_checker_sees_links_and_anchors() -> None:
    """Guard the guard: a link the parser missed would pass every check above."""
    assert "docs/pages.md" in _links(README)
    assert "screenshots/statements.png" in _links(ROOT / "docs" / "pages.md")
    assert _anchor("What `--actor` proves") == "what---actor-proves"
    assert _anchor("Reconciliation: do the books close?") == "reconciliation-do-the-books-close"
