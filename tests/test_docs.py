"""The documentation holds together: its links and anchors lead somewhere, every page is
filed as a manual or a lab notebook, and the README quotes the current figures as they are.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
PAGES = sorted([ROOT / "README.md", ROOT / "ssn" / "models" / "MODEL_CARD.md",
                *DOCS.glob("*.md")])
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading: lower case, punctuation dropped, spaces to '-'."""
    text = heading.strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """The anchors of every heading of ``page`` (code blocks skipped)."""
    found, in_code = set(), False
    for line in page.read_text().splitlines():
        if line.startswith("```"):
            in_code = not in_code
        elif not in_code and re.match(r"#{1,6} ", line):
            found.add(github_anchor(line.lstrip("#")))
    return found


def local_links(page: Path) -> list[tuple[str, str]]:
    """(target path, anchor) of each relative link of ``page``; anchor '' when none."""
    links = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"[a-z]+:", target):
            continue
        path, _, anchor = target.partition("#")
        links.append((path, anchor))
    return links


def test_github_anchor_matches_githubs_rule():
    assert github_anchor(" The fused step under 1.5 ms (2026-11-30, 05:25)") == \
        "the-fused-step-under-15-ms-2026-11-30-0525"
    assert github_anchor(" The label loss's decoder") == "the-label-losss-decoder"


@pytest.mark.parametrize("page", PAGES, ids=lambda page: page.relative_to(ROOT).as_posix())
def test_every_relative_link_and_anchor_exists(page):
    broken = []
    for path, anchor in local_links(page):
        target = (page.parent / path).resolve() if path else page
        if not target.exists():
            broken.append(f"{path}: no such file")
        elif anchor and target.suffix == ".md" and anchor not in anchors(target):
            broken.append(f"{path}#{anchor}: no such heading")
    assert not broken, f"{page.relative_to(ROOT)}: " + "; ".join(broken)


def test_docstrings_cite_existing_layers_md_anchors():
    known = anchors(DOCS / "LAYERS.md")
    cited = re.compile(r"LAYERS\.md#([\w\-]+)")
    missing = []
    for path in sorted((ROOT / "ssn").rglob("*.py")) + sorted((ROOT / "tests").glob("*.py")):
        for anchor in cited.findall(path.read_text()):
            if anchor not in known:
                missing.append(f"{path.relative_to(ROOT)}: #{anchor}")
    assert not missing, "citations of missing LAYERS.md sections: " + ", ".join(missing)


def test_docs_index_files_every_page():
    index = (DOCS / "README.md").read_text()
    linked = {(DOCS / path).resolve() for path, _ in local_links(DOCS / "README.md")}
    assert "## Manuals" in index and "## Lab notebooks" in index
    unfiled = [page.name for page in PAGES if page.resolve() not in linked
               and page != DOCS / "README.md"]
    assert not unfiled, f"docs/README.md does not say what these are: {unfiled}"


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    following = text.find("\n## ", start + len(heading))
    return text[start:following if following >= 0 else len(text)]


def _table_rows(text: str) -> list[list[str]]:
    rows = []
    for line in text.splitlines():
        if line.startswith("|") and not set(line) <= set("|- "):
            rows.append([cell.strip().replace("**", "") for cell in line.strip("|").split("|")])
    return rows


def test_readme_quotes_the_current_figures_as_they_are():
    current = _table_rows(_section((DOCS / "PERFORMANCE.md").read_text(), "## Current figures"))
    quoted = _table_rows(_section((ROOT / "README.md").read_text(), "### Speed and large images"))
    ssn_rows = [row for row in quoted if row[0].startswith("SSN ")]
    assert ssn_rows, "the README quotes no current figure"
    for row in ssn_rows:
        match = [other for other in current if other[0].startswith(row[0])]
        assert match and match[0][1:] == row[1:], f"README row {row} is not in PERFORMANCE.md"
