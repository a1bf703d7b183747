"""The record of each image in the output folder, and its verification.

Layout of an output folder::

    <name>.npy            int32 H x W labels 0..K-1 (with a mask folder: 0 outside the
                          mask, 1..K inside)
    <name>_labels.png     the same labels as a 16-bit PNG
    <name>_overlay.png    boundaries drawn on the image
    <name>.ssn.json       the record, written last: the image (path, size, mtime), the
                          settings that made the labels, and each file's size and sha256
    config.json           the last run's options and settings
    summary.csv, .json    one row per record on disk, rebuilt at the end of every run

Nothing is trusted that was not verified (:func:`verify`): an image counts as
done only if its record matches the run's settings and the image file as it is
now, every file it names has the recorded size and hash, and the .npy loads as
consecutive int32 labels of the image's shape.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path
from typing import Optional

import numpy as np

from ssn.atomic import sha256_of
from ssn.images import IMAGE_SUFFIXES
from ssn.infer.job import TOOL, Item, Job, settings_difference

RECORD_SUFFIX = ".ssn.json"
RECORD_FORMAT = 1
SUMMARY_FIELDS = ["image", "output", "height", "width", "requested", "actual", "seconds",
                  "status"]
# summary.csv as ssn-infer wrote it before records existed: still ours, rebuilt on the next run.
LEGACY_SUMMARY_FIELDS = [field for field in SUMMARY_FIELDS if field != "output"]
# The files of one image, written together (all or none), the .npy last.
OUTPUT_FILES = {"labels_png": "{}_labels.png", "overlay_png": "{}_overlay.png",
                "npy": "{}.npy"}


def record_path(out: Path, name: str) -> Path:
    """Where the record of the outputs named ``name`` lies in ``out``."""
    return out / f"{name}{RECORD_SUFFIX}"


def output_paths(out: Path, name: str) -> dict[str, Path]:
    """The files of the outputs named ``name`` in ``out``, by their key in the record."""
    return {key: out / pattern.format(name) for key, pattern in OUTPUT_FILES.items()}


def read_record(path: Path) -> Optional[dict]:
    """A record of ours, or None (missing, unreadable, not JSON, not ssn-infer's)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(record, dict) or record.get("tool") != TOOL:
        return None
    return record


def source_identity(image: str) -> dict:
    """The image file as it is now: its size, time and content's sha256 (an image rewritten
    with the same size and time is another image)."""
    stat = os.stat(image)
    return dict(size=stat.st_size, mtime_ns=stat.st_mtime_ns, sha256=sha256_of(image))


def check_labels(labels: np.ndarray, height: int, width: int,
                 masked: bool = False) -> Optional[str]:
    """Why ``labels`` are not an H x W int32 map of consecutive labels from 0 (with a
    mask: 0 outside it, consecutive from 1 inside, which may leave no 0), or None."""
    if labels.dtype != np.int32:
        return f"dtype {labels.dtype}, not int32"
    if labels.shape != (height, width):
        return f"shape {labels.shape}, not the image's {(height, width)}"
    if not labels.size:
        return None
    first = labels.min()
    if first not in ((0, 1) if masked else (0,)) or \
            not np.bincount(labels.ravel() - first).all():
        return "labels not consecutive from 0" + (" or 1" if masked else "")
    return None


def find_mask(mask_dir: str, name: str) -> Path:
    """The mask of the image whose outputs are named ``name``: ``<mask_dir>/<name>.png``,
    else the first of its other image suffixes that exists (for one that does not,
    the .png path)."""
    base = Path(mask_dir) / name
    suffixes = [".png"] + sorted(IMAGE_SUFFIXES - {".png"})
    for suffix in suffixes:
        path = base.with_name(base.name + suffix)
        if path.is_file():
            return path
    return base.with_name(base.name + ".png")


def mask_identity(mask_dir: str, name: str) -> dict:
    """The mask file of an image as it is now: its path, size, time and sha256."""
    path = find_mask(mask_dir, name)
    return dict(path=str(path), **source_identity(str(path)))


def verify(item: Item, out: Path, settings: dict) -> tuple[Optional[dict], str]:
    """(record, '') if the item's results on disk are complete and were made by these
    settings from the image as it is now; else (None, why not)."""
    record = read_record(record_path(out, item.name))
    if record is None:
        return None, "no record"
    if record.get("status") != "ok":
        return None, f"last attempt {record.get('status')}"
    if record.get("image") != item.image:
        return None, f"the record is of another image, {record.get('image')}"
    if record.get("settings") != settings:
        return None, settings_difference(record.get("settings") or {}, settings)
    try:
        if record.get("source") != source_identity(item.image):
            return None, "the image changed since"
    except OSError as error:
        return None, f"the image cannot be checked ({error.strerror})"
    mask_dir = settings.get("mask_dir")
    try:
        if mask_dir and record.get("mask") != mask_identity(mask_dir, item.name):
            return None, "the mask changed since"
    except OSError:
        return None, "the mask is missing or cannot be read"
    files = record.get("files") or {}
    for key, path in output_paths(out, item.name).items():
        expected = files.get(key) or {}
        try:
            data = path.read_bytes()
        except OSError:
            return None, f"{path.name} is missing"
        if len(data) != expected.get("size") or \
                hashlib.sha256(data).hexdigest() != expected.get("sha256"):
            return None, f"{path.name} is not the file recorded"
        if key == "npy":
            try:
                labels = np.load(io.BytesIO(data), allow_pickle=False)
            except (OSError, ValueError) as error:
                return None, f"{path.name} does not load ({error})"
            problem = check_labels(labels, record.get("height"), record.get("width"),
                                   masked=bool(mask_dir))
            if problem:
                return None, f"{path.name}: {problem}"
    return record, ""


def summary_row(record: dict) -> dict:
    """A record's row of summary.csv."""
    return {field: record.get(field, "") for field in SUMMARY_FIELDS}


def new_record(job: Job, item: Item) -> dict:
    """The start of an image's record: what it is of, and with which settings."""
    return dict(tool=TOOL, format=RECORD_FORMAT, image=item.image, output=item.name,
                requested=job.settings["n_segments"], settings=job.settings)

