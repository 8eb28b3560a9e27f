"""Every relative link in README.md, results/README.md and docs/ resolves: the file (or folder) exists, and a
``#anchor`` names a heading of the page it points to (GitHub's heading ids). Links in code are not links."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HREF = re.compile(r"<a\s[^>]*href=[\"']([^\"']+)[\"']", re.IGNORECASE)
FENCE = re.compile(r"^\s*(```|~~~)")
INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1")
EXTERNAL = ("http://", "https://", "mailto:", "ftp://")


def pages() -> list[Path]:
    """The Markdown files whose links are checked."""
    found = [ROOT / "README.md", ROOT / "results" / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    return [p for p in found if p.is_file()]


def prose_lines(text: str, strip_code: bool = True) -> list[str]:
    """The lines outside fenced code blocks, with inline code removed unless ``strip_code`` is False (a link
    quoted in code is not followed, but a heading's code is part of its id)."""
    lines, fenced = [], False
    for line in text.splitlines():
        if FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            lines.append(INLINE_CODE.sub("", line) if strip_code else line)
    return lines


def links(text: str) -> list[str]:
    """Every link target in ``text``: Markdown ``[text](target)``, images, and ``<a href>``."""
    found = []
    for line in prose_lines(text):
        found += LINK.findall(line) + HREF.findall(line)
    return found


def slug(heading: str) -> str:
    """GitHub's id of a heading: lowercase, markup and punctuation dropped (except - and _), spaces -> '-'."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip())  # a link in a heading keeps its text
    text = re.sub(r"<[^>]+>", "", text).lower()
    text = "".join(ch for ch in text if ch.isalnum() or ch in " -_")
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The ids of the headings of ``page``; a repeated heading gets -1, -2, ... as on GitHub."""
    seen: dict[str, int] = {}
    ids = set()
    for line in prose_lines(page.read_text(), strip_code=False) if page.suffix == ".md" else []:
        if match := re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line):
            base = slug(match.group(1))
            count = seen.get(base, 0)
            seen[base] = count + 1
            ids.add(base if count == 0 else f"{base}-{count}")
    return ids


def broken(page: Path, text: str | None = None) -> list[str]:
    """The relative links of ``page`` (or of ``text`` as if it were that page) that do not resolve, with why."""
    problems = []
    for target in links(page.read_text() if text is None else text):
        if target.lower().startswith(EXTERNAL):
            continue
        path, _, anchor = target.partition("#")
        where = (page.parent / path).resolve() if path else page
        if not where.exists():
            problems.append(f"{target}: no such file")
        elif anchor and where.suffix == ".md" and anchor not in anchors(where):
            problems.append(f"{target}: no heading #{anchor} in {where.name}")
    return problems


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_relative_link_resolves(page: Path) -> None:
    problems = broken(page)
    assert not problems, f"{page.relative_to(ROOT)}: broken links: {'; '.join(problems)}"


def test_the_check_finds_a_planted_bad_link() -> None:
    page = ROOT / "docs" / "compare.md"
    planted = (
        "See [the tables](no-such-page.md), [the report](report.md#no-such-heading) and "
        '<a href="gone/file.json">a file</a>; not `[code](missing.md)`, nor [web](https://example.org/x.md).\n'
        "```\n[in a block](missing-too.md)\n```\n[fine](report.md#class-names) and [here](#the-verdict)\n"
    )
    assert broken(page, planted) == [
        "no-such-page.md: no such file",
        "report.md#no-such-heading: no heading #no-such-heading in report.md",
        "gone/file.json: no such file",
    ]


def test_heading_ids_follow_githubs_rules() -> None:
    assert slug("The paper column of `report`") == "the-paper-column-of-report"
    assert slug('What "no evidence" could have seen: the detectable difference') == (
        "what-no-evidence-could-have-seen-the-detectable-difference"
    )
    assert slug("Equivalence: `--margin M`") == "equivalence---margin-m"
    assert slug("Set-up: two commands") == "set-up-two-commands"
