"""The images of a batch run: inputs expanded to files, and the names of their outputs.

``<name>`` is the image's stem; inputs of one run that share a stem (``a/img.jpg``,
``b/img.jpg``) are named by their path below the folder they share (``a/img``,
``b/img``: subfolders of the output folder). Outputs are known by their records
(:func:`is_output`): an input named ``x_overlay.png`` is an image like any.
"""
from __future__ import annotations

import glob
import os
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Optional

from ssn.images import IMAGE_SUFFIXES
from ssn.infer.job import Item
from ssn.infer.records import OUTPUT_FILES, read_record, record_path


def expand_inputs(inputs: Iterable[str],
                  problems: Optional[list[tuple[str, str]]] = None) -> list[Path]:
    """Absolute image paths from files, directories, globs and .txt lists, in order, once each.

    A folder gives its images (not its subfolders'); a .txt file one path per line,
    relative to the list's folder. The same file reached twice is listed once.

    An input that cannot be read (a folder or list that cannot be opened, a list that
    is not text) is added to ``problems`` as (input, why) and the others are still
    expanded; without ``problems`` the error is raised. A path that cannot be resolved
    (a symlink loop) is kept as it is: reading it fails for that image alone.
    """
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        try:
            if path.is_dir():
                paths += sorted(p for p in path.iterdir()
                                if p.suffix.lower() in IMAGE_SUFFIXES)
            elif path.suffix.lower() == ".txt" and path.is_file():
                base = path.parent
                for line in path.read_text(encoding="utf-8",
                                           errors="surrogateescape").splitlines():
                    if line.strip():
                        entry = Path(line.strip())
                        paths.append(entry if entry.is_absolute() else base / entry)
            elif any(ch in item for ch in "*?["):
                paths += sorted(Path(p) for p in glob.glob(item, recursive=True))
            else:
                paths.append(path)
        except OSError as error:
            if problems is None:
                raise
            what = "folder" if path.is_dir() else "list"
            problems.append((str(path.absolute()),
                             f"cannot read this {what}: {error.strerror or error}"))
    seen, unique = set(), []
    for path in paths:
        key = resolved(path)
        if key not in seen:
            seen.add(key)
            unique.append(path.absolute())
    return unique


def resolved(path: Path) -> Path:
    """``path`` resolved, or made absolute where it cannot be (a symlink loop)."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop before Python 3.13
        return path.absolute()


def printable(name: str) -> str:
    """``name`` as text any file can hold: a name whose bytes are not UTF-8 (decoded by
    ``os.fsdecode`` with surrogates) gets its odd bytes as ``\\xNN`` escapes."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return os.fsencode(name).decode("utf-8", "backslashreplace")


def is_output(path: Path, out: Path) -> bool:
    """Whether ``path`` is a file ssn-infer wrote in ``out`` (inputs and --out may be one
    folder): a record of ours in ``out`` names it as one of its image's files. A file
    named like an output (``x_overlay.png``) that no record names is an input.

    A record names its files before they are written (status 'incomplete') and again,
    with their hashes, once they are: files left by a killed run are still ours.
    """
    target, root = resolved(path), resolved(out)
    if not target.is_relative_to(root):
        return False
    relative = target.relative_to(root).as_posix()
    for key, pattern in OUTPUT_FILES.items():
        suffix = pattern.format("")
        if not relative.endswith(suffix) or len(relative) == len(suffix):
            continue
        name = relative[:-len(suffix)]
        record = read_record(record_path(root, name))
        if record is not None and record.get("output") == name and \
                ((record.get("files") or {}).get(key) or {}).get("name") == target.name:
            return True
    return False


def assign_names(paths: list[Path]) -> list[Item]:
    """Name each image's outputs: its stem, or, where stems repeat, its path below the
    folder the images of that stem share (``a/img.jpg``, ``b/img.jpg`` -> ``a/img``,
    ``b/img``), keeping the suffix where that alone tells them apart. Names depend only
    on the inputs of the run, so a rerun with the same inputs finds its outputs.
    """
    by_stem: dict[str, list[Path]] = defaultdict(list)
    for path in paths:
        by_stem[path.stem].append(path)
    names: dict[Path, str] = {}
    for stem, group in by_stem.items():
        if len(group) == 1:
            names[group[0]] = stem
            continue
        base = Path(os.path.commonpath([str(p.parent) for p in group]))
        relative = [p.relative_to(base) for p in group]
        candidates = [r.with_suffix("").as_posix() for r in relative]
        if len(set(candidates)) < len(candidates):
            candidates = [r.as_posix() for r in relative]
        names.update(zip(group, candidates))
    taken: set[str] = set()
    items = []
    for path in paths:  # a stem equal to another's name with its suffix: number it
        name, number = names[path], 1
        while name in taken:
            number += 1
            name = f"{names[path]}~{number}"
        taken.add(name)
        items.append(Item(str(path), name))
    return items

