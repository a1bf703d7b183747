"""What a batch run writes besides the records: each image's files, the summary, the
config, and the checks of the output folder before any work.

Every file is written under a temporary name and renamed (:mod:`ssn.atomic`):
a killed run leaves whole files or none, and its temporaries are removed by the
next run (:func:`remove_stale_temporaries`).
"""
from __future__ import annotations

import contextlib
import csv
import errno
import fcntl
import hashlib
import json
import logging
import os
import re
import tempfile
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
from skimage import io as skio

from ssn.atomic import atomic_path, write_atomic
from ssn.images import overlay
from ssn.infer.inputs import printable
from ssn.infer.job import TOOL, Item, RunError, settings_difference
from ssn.infer.records import (
    LEGACY_SUMMARY_FIELDS,
    RECORD_SUFFIX,
    SUMMARY_FIELDS,
    output_paths,
    read_record,
    record_path,
    summary_row,
)

log = logging.getLogger("ssn.infer")


def output_error(out: Path, error: OSError) -> RunError:
    """The :class:`RunError` of an ``error`` writing into ``out`` (a full disk said so)."""
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "no space left on the device"
    return RunError(f"cannot write to {out}: {reason}; nothing half-written is left and "
                    "finished images are kept: free space or fix the folder, then rerun to "
                    "complete the rest")


def remove_files(paths: Iterable[Path]) -> None:
    """Remove the files that exist of ``paths``."""
    for path in paths:
        path.unlink(missing_ok=True)


def write_outputs(out: Path, name: str, rgb: np.ndarray, labels: np.ndarray) -> dict:
    """Write an image's three files, all or none (each under a temporary name first);
    return their names, sizes and sha256."""
    targets = output_paths(out, name)
    files = {}
    with contextlib.ExitStack() as stack:
        temporary = {key: stack.enter_context(atomic_path(path))
                     for key, path in targets.items()}
        skio.imsave(temporary["labels_png"], labels.astype(np.uint16), check_contrast=False)
        skio.imsave(temporary["overlay_png"], overlay(rgb, labels), check_contrast=False)
        np.save(temporary["npy"], labels)
        for key, path in temporary.items():
            data = path.read_bytes()
            files[key] = dict(name=targets[key].name, size=len(data),
                              sha256=hashlib.sha256(data).hexdigest())
    return files


def _is_our_summary_csv(path: Path) -> bool:
    try:
        with open(path, newline="") as stream:
            header = next(csv.reader(stream), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        return False
    return header in (SUMMARY_FIELDS, LEGACY_SUMMARY_FIELDS)


def _is_our_json(path: Path, kind: str) -> bool:
    try:
        content = json.loads(path.read_text())
    except (OSError, ValueError):
        return False
    if kind == "config":
        return isinstance(content, dict) and (content.get("tool") == TOOL
                                              or {"n_segments", "inputs"} <= set(content))
    return isinstance(content, list) and all(isinstance(row, dict) and "image" in row
                                             for row in content)


def check_out(out: Path) -> None:
    """Make sure ``out`` is a folder this run can write and that holds nothing foreign.

    Raises
    ------
    RunError
        ``out`` is a file, cannot be created or written, or holds a summary or config
        that ssn-infer did not write (it would be overwritten).
    """
    if out.exists() and not out.is_dir():
        raise RunError(f"--out {out} is a file, not a folder: choose a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out, prefix=".ssn-infer-probe."):
            pass
    except OSError as error:
        raise RunError(f"cannot write to --out {out}: {error.strerror or error}") from error
    checks = [("summary.csv", _is_our_summary_csv),
              ("summary.json", lambda path: _is_our_json(path, "summary")),
              ("config.json", lambda path: _is_our_json(path, "config"))]
    for name, ours in checks:
        path = out / name
        if path.exists() and not ours(path):
            raise RunError(f"{path} was not written by ssn-infer, and a run would replace it: "
                           "choose another --out (or move that file away)")


def conflicts(out: Path, items: list[Item], settings: dict) -> list[str]:
    """What in ``out`` this run would silently replace, one line per kind: results made
    with other settings (config.json, images' records), names holding another image's
    results."""
    found: dict[str, list[str]] = defaultdict(list)
    config_path = out / "config.json"
    if config_path.exists():
        config_settings = json.loads(config_path.read_text()).get("settings")
        if config_settings is not None and config_settings != settings:
            found[settings_difference(config_settings, settings)].append("config.json")
    for item in items:
        record = read_record(record_path(out, item.name))
        if record is None or record.get("status") != "ok":
            continue
        if record.get("image") != item.image:
            found["the results of other images under these names"].append(
                f"{item.name} ({record.get('image')})")
        elif record.get("settings") != settings:
            found[settings_difference(record.get("settings") or {}, settings)].append(
                item.name)
    lines = []
    for what, where in found.items():
        shown = ", ".join(where[:3]) + (f" and {len(where) - 3} more" if len(where) > 3 else "")
        lines.append(f"{what} ({shown})")
    return lines


# Our temporary names (ssn.atomic.atomic_path): ".<stem>.<8 random characters>.tmp<suffix>".
TEMP_NAME = re.compile(r"^\..*\.[a-z0-9_]{8}\.tmp(\.[A-Za-z0-9]+)?$")


# Another run into --out may be writing one right now: only older ones are left over.
STALE_TEMP_AGE_S = 60.0


def remove_stale_temporaries(out: Path, started: float) -> list[Path]:
    """Remove the temporary files of ours in ``out`` (and its subfolders) last written
    :data:`STALE_TEMP_AGE_S` before ``started`` (a time.time()): a killed run's leftovers.
    Files of other names are never touched. Returns the files removed."""
    removed = []
    for path in out.rglob(".*.tmp*"):
        try:
            if TEMP_NAME.match(path.name) and path.is_file() and not path.is_symlink() and \
                    path.stat().st_mtime < started - STALE_TEMP_AGE_S:
                path.unlink()
                removed.append(path)
        except OSError:
            continue  # gone already, or not ours to remove
    if removed:
        log.info("removed %d temporary file(s) left by an earlier run in %s", len(removed), out)
    return removed


@contextlib.contextmanager
def folder_lock(out: Path):
    """Hold an exclusive lock on the folder (runs into one --out rebuild the summary one at a
    time); where the file system has no locks, go on without."""
    try:
        descriptor = os.open(out, os.O_RDONLY)
    except OSError:
        yield
        return
    try:
        with contextlib.suppress(OSError):
            fcntl.flock(descriptor, fcntl.LOCK_EX)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def summary_rows(out: Path, settings: dict, items: Iterable[Item] = (),
                 extra: Iterable[dict] = ()) -> list[dict]:
    """One row per record in ``out``, and the ``extra`` rows (inputs of this run that
    could not get a record), sorted by image and name.

    A record made with other settings, whose files are gone or changed size, or
    of an image this run names otherwise, gets a 'stale: ...' status.
    """
    current = {item.image: item.name for item in items}
    rows = []
    for path in sorted(out.rglob(f"*{RECORD_SUFFIX}")):
        record = read_record(path)
        if record is None or record_path(out, str(record.get("output"))) != path:
            continue  # not ours, or moved by hand
        row = summary_row(record)
        if record.get("status") == "ok":
            if record.get("settings") != settings:
                row["status"] = "stale: " + settings_difference(record.get("settings") or {},
                                                                settings)
            elif any(not _has_size(path.parent / str(spec.get("name")), spec.get("size"))
                     for spec in (record.get("files") or {}).values()):
                row["status"] = "stale: its files are missing or changed"
            elif current.get(record.get("image"), record.get("output")) != record.get("output"):
                row["status"] = (f"stale: this image's results are now "
                                 f"{current[record['image']]}")
        rows.append(row)
    rows += [{field: row.get(field, "") for field in SUMMARY_FIELDS} for row in extra]
    return sorted(rows, key=lambda row: (str(row["image"]), str(row["output"])))


def _has_size(path: Path, size) -> bool:
    try:
        return path.stat().st_size == size
    except OSError:
        return False


def write_summary(out: Path, settings: dict, items: Iterable[Item] = (),
                  extra: Iterable[dict] = ()) -> list[dict]:
    """Rebuild summary.csv and summary.json from the records on disk and the ``extra``
    rows (see :func:`summary_rows`); return the rows.

    Names that are not UTF-8 are written escaped (:func:`printable`) in summary.csv,
    and as JSON's ``\\udcNN`` escapes (which ``os.fsencode`` turns back into the
    name's bytes) in summary.json, so that any name can be listed.

    Raises
    ------
    RunError
        If they cannot be written (the old ones are then left as they were).
    """
    with folder_lock(out):
        rows = summary_rows(out, settings, items, extra)
        try:
            with atomic_path(out / "summary.csv") as tmp:
                with open(tmp, "w", newline="", encoding="utf-8") as stream:
                    writer = csv.DictWriter(stream, fieldnames=SUMMARY_FIELDS)
                    writer.writeheader()
                    writer.writerows({key: printable(value) if isinstance(value, str)
                                      else value for key, value in row.items()}
                                     for row in rows)
            write_atomic(out / "summary.json", json.dumps(rows, indent=1))
        except OSError as error:
            raise output_error(out, error) from error
    return rows



def write_config(out: Path, options: dict, settings: dict, threads: Optional[int]) -> None:
    """Write config.json: the run's ``options`` (paths as text), its settings and its
    threads per process.

    Raises
    ------
    RunError
        If it cannot be written.
    """
    config = {key: (str(value) if isinstance(value, Path) else value)
              for key, value in options.items()}
    config.update(tool=TOOL, settings=settings, threads=threads)
    try:
        write_atomic(out / "config.json", json.dumps(config, indent=1))
    except OSError as error:
        raise output_error(out, error) from error
