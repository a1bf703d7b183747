"""Data sets of image + per-pixel target pairs, for training SSN on any task.

A data set is a folder or a list file:

* a folder with ``images/`` and ``targets/``; an image and its target share a
  file stem (``images/0001.jpg`` with ``targets/0001.png``);
* a ``.txt`` list, one pair per line: the image path, then the target path
  (separated by spaces, a tab or a comma), relative to the list's folder;
  blank lines and lines starting with ``#`` are skipped.

Targets are either **labels** (an integer class or segment map: an 8- or
16-bit single-channel PNG/TIFF, or an integer ``.npy``) or **continuous**
(a ``.flo`` optical flow, a float or integer ``.npy`` of H x W or H x W x C,
or a single-channel 8- or 16-bit PNG/TIFF read as its integer values).
Everything about a pair (both files there, readable, same size, the right
kind of values) is checked in Python before Caffe starts.
"""
from __future__ import annotations

import glob
import logging
import os
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
from skimage import io as skio
from tqdm import tqdm

from ssn.bsds import BSDSImage
from ssn.flow import read_flo
from ssn.images import IMAGE_SUFFIXES, as_rgb

log = logging.getLogger("ssn.training.pairs")

TARGET_KINDS = ("labels", "continuous")
LABEL_SUFFIXES = (".png", ".tif", ".tiff", ".npy")
CONTINUOUS_SUFFIXES = (".flo", ".npy", ".png", ".tif", ".tiff")
TARGET_SUFFIXES = {"labels": LABEL_SUFFIXES, "continuous": CONTINUOUS_SUFFIXES}
MAX_REPORTED = 10  # problems listed in one error message


class DatasetError(ValueError):
    """A data set that cannot be trained on, with every reason found."""


@dataclass(frozen=True)
class Pair:
    """One training example: an image file and its target file."""

    stem: str
    image: Path
    target: Path


def check_kind(kind: str) -> str:
    if kind not in TARGET_KINDS:
        raise ValueError(f"target must be one of {TARGET_KINDS}, got {kind!r}")
    return kind


def problems_message(what: str, problems: Sequence[str]) -> str:
    """``what`` and the first :data:`MAX_REPORTED` problems, one per line."""
    shown = "\n  ".join(problems[:MAX_REPORTED])
    more = (f"\n  ... and {len(problems) - MAX_REPORTED} more"
            if len(problems) > MAX_REPORTED else "")
    return f"{what}:\n  {shown}{more}"


def by_stem(folder: Path, suffixes: Sequence[str]) -> dict[str, Path]:
    """Files of ``folder`` with one of ``suffixes`` by stem; two files of one stem are
    an error (which would be the pair's?)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(folder.iterdir()):
        if path.is_file() and path.suffix.lower() in suffixes:
            found.setdefault(path.stem, []).append(path)
    doubles = [f"{stem}: {', '.join(p.name for p in paths)}" for stem, paths in found.items()
               if len(paths) > 1]
    if doubles:
        raise DatasetError(problems_message(f"{folder} has several files for one stem", doubles))
    return {stem: paths[0] for stem, paths in found.items()}


def other_files(folder: Path, stem: str) -> str:
    """' (found NAME, ...)' for the files of ``stem`` in ``folder``, else ''."""
    found = sorted(path.name for path in folder.glob(glob.escape(stem) + ".*"))
    return f" (found {', '.join(found)}: not a target of this kind)" if found else ""


def folder_pairs(folder: os.PathLike, kind: str) -> list[Pair]:
    """The pairs of ``folder/images`` and ``folder/targets``, by stem, sorted.

    Raises
    ------
    DatasetError
        A missing sub-folder, no pairs, or an image without a target (or a
        target without an image), all listed.
    """
    folder = Path(folder)
    images_dir, targets_dir = folder / "images", folder / "targets"
    for sub in (images_dir, targets_dir):
        if not sub.is_dir():
            raise DatasetError(f"{folder} is not a data set folder: {sub} is missing (expected "
                               "images/ and targets/ with one target per image, same stem)")
    images = by_stem(images_dir, tuple(IMAGE_SUFFIXES))
    targets = by_stem(targets_dir, TARGET_SUFFIXES[check_kind(kind)])
    problems = [f"{images[s].name}: no target {targets_dir}/{s}.*{other_files(targets_dir, s)}"
                for s in images if s not in targets]
    problems += [f"{targets[s].name}: no image {images_dir}/{s}.*" for s in targets
                 if s not in images]
    if problems:
        raise DatasetError(problems_message(
            f"{folder}: unpaired files (targets of --target {kind}: "
            f"{', '.join(TARGET_SUFFIXES[kind])})", problems))
    if not images:
        raise DatasetError(f"{folder}: no image in {images_dir}")
    return [Pair(stem, images[stem], targets[stem]) for stem in sorted(images)]


def list_pairs(list_file: os.PathLike) -> list[Pair]:
    """The pairs of a list file (see the module docstring), in its order.

    Raises
    ------
    DatasetError
        A line that is not two paths, a missing file, or no pairs, all listed
        with their line numbers.
    """
    list_file = Path(list_file)
    base, pairs, problems = list_file.parent, [], []
    for number, line in enumerate(list_file.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        fields = [field for field in re.split(r"[,\t ]+", line.strip()) if field]
        if len(fields) != 2:
            problems.append(f"line {number}: expected 'IMAGE TARGET', got {line.strip()!r}")
            continue
        image, target = (Path(field) if Path(field).is_absolute() else base / field
                         for field in fields)
        missing = [str(path) for path in (image, target) if not path.is_file()]
        if missing:
            problems.append(f"line {number}: no such file {', '.join(missing)}")
            continue
        pairs.append(Pair(image.stem, image, target))
    if problems:
        raise DatasetError(problems_message(f"{list_file}: bad lines", problems))
    if not pairs:
        raise DatasetError(f"{list_file}: no pairs")
    return pairs


def open_pairs(dataset: os.PathLike, kind: str) -> list[Pair]:
    """The pairs of a data set folder or list file."""
    dataset = Path(dataset)
    if dataset.is_dir():
        return folder_pairs(dataset, kind)
    if dataset.is_file():
        return list_pairs(dataset)
    raise DatasetError(f"no data set at {dataset}: expected a folder with images/ and "
                       "targets/, or a .txt list of 'IMAGE TARGET' lines")


def read_array(path: Path) -> np.ndarray:
    """The array in a target file (.flo, .npy or an image), unchecked."""
    suffix = path.suffix.lower()
    try:
        if suffix == ".flo":
            return read_flo(path)
        if suffix == ".npy":
            return np.load(path, allow_pickle=False)
        return np.asarray(skio.imread(path))
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad file
        raise ValueError(f"cannot read target {path} ({type(error).__name__}: {error})") \
            from error


def read_labels(path: Path) -> np.ndarray:
    """A label target: H x W int64.

    Raises
    ------
    ValueError
        A .flo file, more than one channel, or values that are not integers.
    """
    path = Path(path)
    if path.suffix.lower() == ".flo":
        raise ValueError(f"{path} is optical flow, not labels: use --target continuous")
    array = read_array(path)
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if array.ndim != 2:
        raise ValueError(f"label target {path} is {array.shape}: expected one H x W channel "
                         "of class or segment ids")
    if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
        raise ValueError(f"label target {path} holds {array.dtype} values: labels are integer "
                         "ids (for a continuous map use --target continuous)")
    return array.astype(np.int64)


def read_continuous(path: Path) -> np.ndarray:
    """A continuous target: H x W x C float32 (C = 2 for .flo).

    Raises
    ------
    ValueError
        Not numbers, not H x W or H x W x C, or NaN or infinite values.
    """
    path = Path(path)
    array = read_array(path)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number) \
            or np.issubdtype(array.dtype, np.complexfloating):
        raise ValueError(f"continuous target {path} holds {array.dtype} values: expected real "
                         "numbers")
    if array.ndim == 2:
        array = array[:, :, None]
    if array.ndim != 3 or array.shape[2] < 1:
        raise ValueError(f"continuous target {path} is {array.shape}: expected H x W or "
                         "H x W x C")
    if path.suffix.lower() in (".png", ".tif", ".tiff") and array.shape[2] != 1:
        raise ValueError(f"continuous target {path} is a {array.shape[2]}-channel image: "
                         "store several channels as .npy (H x W x C) or .flo")
    array = array.astype(np.float32)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"continuous target {path} holds NaN or infinite values")
    return array


def read_rgb(path: Path) -> np.ndarray:
    """An image file as H x W x 3 uint8 (16-bit and float images rescaled)."""
    try:
        image = as_rgb(skio.imread(path))
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad file
        raise ValueError(f"cannot read image {path} ({type(error).__name__}: {error})") \
            from error
    return np.clip(np.rint(image * 255), 0, 255).astype(np.uint8)


def load_pair(pair: Pair, kind: str) -> BSDSImage:
    """The image (H x W x 3 uint8) and its one target, checked.

    The target is the one entry of ``segmentations``: H x W int64 labels, or
    H x W x C float32 continuous values.

    Raises
    ------
    ValueError
        Either file unreadable, the wrong kind of values, or sizes that differ.
    """
    rgb = read_rgb(pair.image)
    target = read_labels(pair.target) if check_kind(kind) == "labels" \
        else read_continuous(pair.target)
    if target.shape[:2] != rgb.shape[:2]:
        raise ValueError(f"{pair.image} is {rgb.shape[0]} x {rgb.shape[1]} pixels, its target "
                         f"{pair.target} is {target.shape[0]} x {target.shape[1]}")
    return BSDSImage(rgb=rgb, segmentations=[target])


def check_dataset(dataset: os.PathLike, kind: str) -> tuple[list[Pair], int]:
    """Open a data set and read every pair once; return the pairs and the target channels.

    Raises
    ------
    DatasetError
        Listing every pair that cannot be read or does not match, and continuous
        targets with different channel counts.
    """
    pairs = open_pairs(dataset, kind)
    problems, channels = [], {}
    for pair in tqdm(pairs, unit="pair", desc="checking", file=sys.stderr,
                     disable=not sys.stderr.isatty()):
        try:
            target = load_pair(pair, kind).segmentations[0]
        except (ValueError, OSError) as error:
            problems.append(str(error))
            continue
        channels.setdefault(1 if target.ndim == 2 else target.shape[2], []).append(pair.stem)
    if problems:
        raise DatasetError(problems_message(f"{dataset}: {len(problems)} of {len(pairs)} pairs "
                                            "cannot be used", problems))
    if len(channels) > 1:
        counts = ", ".join(f"{c} channel(s): {len(s)} (e.g. {s[0]})" for c, s in channels.items())
        raise DatasetError(f"{dataset}: targets have different channel counts: {counts}")
    return pairs, next(iter(channels))
