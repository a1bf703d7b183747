"""The project stands on its own: no tracked file cites a document outside it.

Code, comments, tests and docs explain things in their own words or link to a page in
``docs/`` (the layer and network conventions are in docs/LAYERS.md). A specification,
a tracker's issue number or a branch name is not something a reader of this checkout
can open, so none may be cited.
"""
from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

# Each pattern names what it catches; a match anywhere in a tracked text file fails.
FORBIDDEN = {
    "a specification's section": re.compile(r"\bspec(ification)?('s)?\s+(section|§|\d)", re.I),
    "a section sign": re.compile("\u00a7"),
    "an outside specification file": re.compile(r"\bSSN\.md\b|shared/spec", re.I),
    "a shared folder's document": re.compile(r"\.\./shared/(?!data/)"),
    "an issue number": re.compile(r"\b(issues?|PR|pull request)\s+#?\d+", re.I),
    "a bare #number": re.compile(r"(?:^|(?<=[\s(\[,]))#\d{1,4}\b(?![\w-]|\.\d)"),
    "a working branch or folder": re.compile(r"\b(s\d{2}-[a-z]+|wt-[a-z]+)\b"),
    "a branch name": re.compile(r"\bbranch(es)? `"),
}

# Literal text that a pattern above would flag but that is not a citation: Caffe's own
# log line ("Train net output #0: loss = ...") which a test parses.
ALLOWED = ("output #",)


THIS_FILE = Path(__file__).resolve().relative_to(ROOT).as_posix()


def tracked_text_files() -> list[str]:
    """Tracked paths (relative to the checkout) whose content is text, minus the exclusions."""
    listed = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                            capture_output=True).stdout.decode().split("\0")
    paths = []
    for path in filter(None, listed):
        if path == THIS_FILE:
            continue
        full = ROOT / path
        if not full.is_file():
            continue
        if b"\0" in full.read_bytes()[:8192]:
            continue
        paths.append(path)
    return paths


def outside_references(path: str, text: str) -> list[str]:
    """``path:line: what: the line`` for each line of ``text`` that cites an outside document."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        if any(allowed in line for allowed in ALLOWED):
            continue
        for what, pattern in FORBIDDEN.items():
            if pattern.search(line):
                found.append(f"{path}:{number}: {what}: {line.strip()[:120]}")
    return found


def test_no_tracked_file_cites_an_outside_document():
    try:
        subprocess.run(["git", "rev-parse"], cwd=ROOT, check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    found = []
    for path in tracked_text_files():
        text = (ROOT / path).read_text(encoding="utf-8", errors="replace")
        found.extend(outside_references(path, text))
    assert not found, "references to documents outside the project:\n" + "\n".join(found)


@pytest.mark.parametrize("line", [
    "Connectivity enforcement (spec section 11).",
    "Passoc's distances (spec 3.3).",
    "see \u00a74 of the paper",
    "as in SSN.md",
    "read ../shared/STYLE.md first",
    "fixed in issue 12",
    "(issue #27, item 9)",
    "Tracked as #15.",
    "made on branch `fused`",
    "see the s28-docs worktree",
])
def test_each_kind_of_outside_reference_is_caught(line):
    assert outside_references("x.py", line)


@pytest.mark.parametrize("line", [
    "Connectivity enforcement (docs/LAYERS.md#connectivity-enforcement).",
    "spec = caffe.NetSpec()",
    "if \"Train net output #0: loss =\" in line",
    "export SSN_DATA_ROOT=$PWD/../shared/data/BSDS500",
    "colour = '#1f77b4'",
    "#include <vector>",
    "the SSD branch's layers",
    "[below](#2026-11-29-the-runs)",
])
def test_ordinary_text_passes(line):
    assert not outside_references("x.py", line)
