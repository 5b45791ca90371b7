"""The README opens with the two set-up commands, and every relative link in the user documentation resolves.

Checked pages: README.md, results/README.md and every Markdown page under docs/. A link resolves when its
target file or folder exists and, for a link with a ``#fragment`` into a Markdown page, when that page has
a heading with that GitHub anchor.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


FENCE = re.compile(r"^(```|~~~)")
INLINE_CODE = re.compile(r"`[^`]*`")
LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def documentation_pages() -> list[Path]:
    """README.md, results/README.md and the docs/ pages, in a stable order."""
    pages = [ROOT / "README.md", ROOT / "results" / "README.md"]
    pages += sorted((ROOT / "docs").rglob("*.md"))
    return pages


def prose_lines(text: str) -> list[tuple[int, str]]:
    """(line number, line) outside fenced code blocks, with inline code removed."""
    out, in_fence = [], False
    for number, line in enumerate(text.splitlines(), start=1):
        if FENCE.match(line.strip()):
            in_fence = not in_fence
            continue
        if not in_fence:
            out.append((number, INLINE_CODE.sub("", line)))
    return out


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link in a heading keeps its text
    text = text.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of a Markdown page; repeated headings get -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    found = set()
    in_fence = False
    for line in page.read_text(encoding="utf-8").splitlines():
        if FENCE.match(line.strip()):
            in_fence = not in_fence
            continue
        match = None if in_fence else HEADING.match(line)
        if match:
            base = github_anchor(match.group(2))
            count = seen.get(base, 0)
            found.add(base if count == 0 else f"{base}-{count}")
            seen[base] = count + 1
    return found


def relative_links(page: Path) -> list[tuple[int, str]]:
    """(line number, target) of every link that is neither absolute nor a URL."""
    links = []
    for number, line in prose_lines(page.read_text(encoding="utf-8")):
        for target in LINK.findall(line):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.IGNORECASE) or target.startswith("/"):
                continue
            links.append((number, target))
    return links


def broken_links(page: Path) -> list[str]:
    """One line per link of ``page`` that does not resolve."""
    problems = []
    for number, target in relative_links(page):
        path_part, _, fragment = target.partition("#")
        where = f"{page.relative_to(ROOT)}:{number}: {target}"
        target_path = (page.parent / path_part).resolve() if path_part else page
        if not target_path.is_relative_to(ROOT):
            problems.append(f"{where}: points outside the repository")
            continue
        if not target_path.exists():
            problems.append(f"{where}: no such file")
            continue
        if fragment and target_path.suffix == ".md" and fragment not in anchors(target_path):
            problems.append(f"{where}: no heading with anchor #{fragment}")
    return problems


def test_readme_starts_with_the_two_commands() -> None:
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    body = [line for line in lines if line.strip()]
    assert body[0].startswith("# "), "README.md must open with its title"
    assert body[1].strip() == "```bash", "the first thing after the title must be the bash block"
    commands = [line.split("#")[0].strip() for line in body[2:4]]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert body[4].strip() == "```", "the opening block holds exactly the two commands"


@pytest.mark.parametrize("page", documentation_pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(page: Path) -> None:
    assert broken_links(page) == []


def test_the_checker_finds_broken_links(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(f"{__name__}.ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "there.md").write_text("# A heading, with `code`\n\n## Twice\n\n## Twice\n", encoding="utf-8")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "[ok](../there.md) [ok](../there.md#a-heading-with-code) [ok](../there.md#twice-1)\n"
        "[ok](https://example.org/x) `[not a link](gone.md)`\n"
        "```\n[in a fence](gone.md)\n```\n"
        "[missing](gone.md) [bad anchor](../there.md#nowhere) [out](../../x.md)\n",
        encoding="utf-8",
    )
    problems = broken_links(page)
    assert [p.split(": ")[1] for p in problems] == ["gone.md", "../there.md#nowhere", "../../x.md"]
