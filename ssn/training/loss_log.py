"""The CSV log of a training run's losses, one row per iteration.

A resumed run drops the rows after its snapshot (:func:`trim_log`), which it
computes again; a fresh run moves an earlier run's log aside (:func:`set_aside_log`).
"""
from __future__ import annotations

import csv
import logging
import os
import time
from pathlib import Path
from typing import Optional

from ssn.atomic import write_atomic

log = logging.getLogger("ssn.training.solver")


def trim_log(path: Path, iteration: int) -> None:
    """Drop a loss log's rows after ``iteration`` (and a torn last line)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    if not lines:
        return
    width = len(next(csv.reader([lines[0]])))
    kept = [lines[0]]
    for line in lines[1:]:
        row = next(csv.reader([line]), [])
        if (line.endswith("\n") and len(row) == width and row[0].isdigit()
                and int(row[0]) <= iteration):
            kept.append(line)
    if len(kept) != len(lines):
        log.info("%s: dropped %d row(s) after iteration %d", path, len(lines) - len(kept),
                 iteration)
        write_atomic(path, "".join(kept))


def set_aside_log(path: Path) -> Optional[Path]:
    """Move an earlier run's loss log out of a fresh run's way, to
    ``<stem>.<its last write, YYYYmmdd-HHMMSS>.csv`` (numbered if that is taken), and
    return where; None if there is none. A fresh run's log holds its own rows only;
    the old rows are kept (refusing would stop a rerun into the same prefix, and
    appending mixed two runs' iterations in one log)."""
    path = Path(path)
    try:
        written = path.stat().st_mtime
    except FileNotFoundError:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(written))
    aside, number = path.with_name(f"{path.stem}.{stamp}{path.suffix}"), 1
    while aside.exists():
        number += 1
        aside = path.with_name(f"{path.stem}.{stamp}-{number}{path.suffix}")
    os.rename(path, aside)
    log.info("a fresh run: the earlier loss log %s is now %s", path, aside)
    return aside
