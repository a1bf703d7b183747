"""Our changes to Caffe's own sources: ``patches/caffe/series``, applied to pristine files.

Each patch is a unified diff against the pinned sdist (``patch -p1``), with a
header saying what it changes and why. On every build each file that any patch
touches (now, or in the previous build of the tree) is restored from the
tarball and the series is applied again, in a scratch folder; the results are
copied into the tree only where they differ, so make recompiles exactly what a
patch edit changed. The tree therefore always equals the tarball plus the
series, whatever an older build did to it.
"""
from __future__ import annotations

import logging
import re
import subprocess
import tarfile
import tempfile
from pathlib import Path
from typing import Optional

from ssn.atomic import write_if_changed

log = logging.getLogger("ssn_build")

PATCHED_MANIFEST = ".ssn_patched_files"


class PatchError(RuntimeError):
    """A patch is missing, malformed or does not apply to the pristine sources."""


def read_series(patch_dir: Path) -> list[Path]:
    """The patches named in ``patch_dir/series``, in order (``#`` starts a comment)."""
    series = patch_dir / "series"
    if not series.is_file():
        raise PatchError(f"{series}: no series file")
    patches = []
    for line in series.read_text().splitlines():
        name = line.split("#", 1)[0].strip()
        if name:
            patch = patch_dir / name
            if not patch.is_file():
                raise PatchError(f"{series}: {name} does not exist")
            patches.append(patch)
    return patches


def touched_files(patch: Path) -> list[str]:
    """Paths (relative to the tree) that a ``-p1`` unified diff changes."""
    names = re.findall(r"(?m)^\+\+\+ [^/\s]+/(\S+)", patch.read_text())
    if not names:
        raise PatchError(f"{patch}: not a unified diff (no '+++ b/...' lines)")
    return names


def read_pristine(tarball: Path, relatives: set[str]) -> dict[str, Optional[bytes]]:
    """The sdist's own copies of ``relatives``; a path not in it maps to None."""
    found: dict[str, bytes] = {}
    with tarfile.open(tarball) as archive:
        for member in archive:
            top, _, relative = member.name.partition("/")
            if relative in relatives and member.isfile():
                found[relative] = archive.extractfile(member).read()
    return {relative: found.get(relative) for relative in relatives}


def patched_sources(tarball: Path, patches: list[Path],
                    extra: set[str] = frozenset()) -> dict[str, Optional[bytes]]:
    """Apply ``patches`` in order to pristine copies of the files they touch.

    ``extra`` names more files to return as they are in the tarball (files an
    earlier series touched). Returns relative path -> content, None for a file
    that neither the tarball nor the patches make.

    Raises
    ------
    PatchError
        If a patch does not apply exactly (no fuzz) or ``patch`` is missing.
    """
    touched = {name for patch in patches for name in touched_files(patch)}
    contents = read_pristine(tarball, touched | set(extra))
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch)
        for relative in touched:
            if contents[relative] is not None:
                (root / relative).parent.mkdir(parents=True, exist_ok=True)
                (root / relative).write_bytes(contents[relative])
        for patch in patches:
            try:
                result = subprocess.run(
                    ["patch", "-p1", "--batch", "--forward", "--fuzz=0", "--quiet",
                     "--no-backup-if-mismatch", "--reject-file=-", "-d", str(root),
                     "-i", str(patch.resolve())], capture_output=True, text=True)
            except FileNotFoundError as error:
                raise PatchError("the 'patch' program is missing (apt-get install patch)") \
                    from error
            if result.returncode != 0:
                raise PatchError(f"{patch.name} does not apply to the pristine sources:\n"
                                 f"{result.stdout}{result.stderr}")
        for relative in touched:
            result_file = root / relative
            contents[relative] = result_file.read_bytes() if result_file.exists() else None
    return contents


def apply_series(tree: Path, tarball: Path, patch_dir: Path) -> list[str]:
    """Make ``tree``'s patched files equal tarball + series; return those rewritten.

    Files an earlier series touched but this one does not are restored from
    the tarball.
    """
    manifest = tree / PATCHED_MANIFEST
    previous = set(manifest.read_text().split()) if manifest.exists() else set()
    patches = read_series(patch_dir)
    contents = patched_sources(tarball, patches, previous)
    changed = []
    for relative, content in sorted(contents.items()):
        if content is None:
            if (tree / relative).exists():
                (tree / relative).unlink()
                changed.append(relative)
        elif write_if_changed(tree / relative, content):
            changed.append(relative)
    write_if_changed(manifest, "\n".join(sorted(contents)).encode())
    log.info("applied %d patch(es) from %s; %d file(s) changed", len(patches), patch_dir,
             len(changed))
    return changed


def stale_files(tree: Path, tarball: Path, patch_dir: Path) -> list[str]:
    """Patched files in ``tree`` that differ from tarball + series (empty when current)."""
    contents = patched_sources(tarball, read_series(patch_dir))
    def current(relative: str, content: Optional[bytes]) -> bool:
        path = tree / relative
        if content is None:
            return not path.exists()
        return path.is_file() and path.read_bytes() == content

    return [relative for relative, content in sorted(contents.items())
            if not current(relative, content)]
