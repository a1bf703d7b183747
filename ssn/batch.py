"""Superpixels for many images: the per-image work behind ``ssn-infer`` (tools/infer.py).

Layout of an output folder (``--out``)::

    <name>.npy            int32 H x W labels 0..K-1 (with --mask-dir: 0 outside the
                          mask, 1..K inside)
    <name>_labels.png     the same labels as a 16-bit PNG
    <name>_overlay.png    boundaries drawn on the image
    <name>.ssn.json       the record, written last: the image (path, size, mtime), the
                          settings that made the labels, and each file's size and sha256
    config.json           the last run's options and settings
    summary.csv, .json    one row per record on disk, rebuilt at the end of every run

``<name>`` is the image's stem; inputs of one run that share a stem (``a/img.jpg``,
``b/img.jpg``) are named by their path below the folder they share (``a/img``,
``b/img``: subfolders of --out).

Nothing is trusted that was not verified: an image counts as done only if its
record matches this run's settings and the image file as it is now, every file
it names has the recorded size and hash, and the .npy loads as consecutive
int32 labels of the image's shape. Anything else is recomputed. A record made
with other settings, or naming another image, stops the run before any work
(unless ``overwrite``): an --out folder holds one set of settings.

:func:`process` is the task every engine runs (in this process, in worker
processes, on Dask workers): it needs only the :class:`Job` and an
:class:`Item`, reads the image and writes the results itself, and returns a
summary row. A bad image gives a failed row and a record saying why; a problem
of the whole run (--out cannot be written, the disk is full, the device or the
weights are wrong) raises :class:`RunError`.
"""
from __future__ import annotations

import argparse
import contextlib
import csv
import errno
import fcntl
import glob
import hashlib
import io
import json
import logging
import os
import re
import signal
import socket
import sys
import tempfile
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Iterable, Optional

import numpy as np
from skimage import io as skio
from tqdm import tqdm

from ssn import __version__, engines
from ssn.atomic import atomic_path, sha256_of, write_atomic
from ssn.device import use_device
from ssn.engines import RunError
from ssn.images import IMAGE_SUFFIXES, overlay, read_image, read_mask
from ssn.inference import (
    check_weights,
    count_argument,
    model_defaults,
    resolve_features,
    size_factors,
    superpixels,
)
from ssn.model_metadata import model_settings

log = logging.getLogger("ssn.batch")

TOOL = "ssn-infer"
RECORD_SUFFIX = ".ssn.json"
RECORD_FORMAT = 1
SUMMARY_FIELDS = ["image", "output", "height", "width", "requested", "actual", "seconds",
                  "status"]
# summary.csv as ssn-infer wrote it before records existed: still ours, rebuilt on the next run.
LEGACY_SUMMARY_FIELDS = [field for field in SUMMARY_FIELDS if field != "output"]
# The files of one image, written together (all or none), the .npy last.
OUTPUT_FILES = {"labels_png": "{}_labels.png", "overlay_png": "{}_overlay.png",
                "npy": "{}.npy"}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a run stops as on Ctrl-C (exit 143)."""


@contextlib.contextmanager
def sigterm_stops_the_run():
    """A context in which SIGTERM raises :class:`Terminated` (once; a second is ignored
    while the run stops). Only the main thread can set a handler: elsewhere it does
    nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass(frozen=True)
class Item:
    """One input image: its absolute path, and the name of its outputs in --out."""

    image: str
    name: str


@dataclass
class Job:
    """What every task needs to know, picklable for worker processes and Dask.

    Attributes
    ----------
    out : str
        The output folder (absolute; on a cluster, the same path on every worker).
    settings : dict
        What makes the labels (:func:`make_settings`): recorded with each image and
        compared on reruns.
    weights : str or None
        The .caffemodel for deep features.
    gpu : int
        GPU id, -1 for the CPU.
    overwrite : bool
        Recompute images whose results are verified.
    threads : int or None
        OpenMP/BLAS threads per process; None leaves the process's own setting.
    """

    out: str
    settings: dict
    weights: Optional[str]
    gpu: int = -1
    overwrite: bool = False
    threads: Optional[int] = None


# --------------------------------------------------------------------------------------------
# Inputs and names


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
        key = _resolved(path)
        if key not in seen:
            seen.add(key)
            unique.append(path.absolute())
    return unique


def _resolved(path: Path) -> Path:
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
    resolved, root = _resolved(path), _resolved(out)
    if not resolved.is_relative_to(root):
        return False
    relative = resolved.relative_to(root).as_posix()
    for key, pattern in OUTPUT_FILES.items():
        suffix = pattern.format("")
        if not relative.endswith(suffix) or len(relative) == len(suffix):
            continue
        name = relative[:-len(suffix)]
        record = read_record(record_path(root, name))
        if record is not None and record.get("output") == name and \
                ((record.get("files") or {}).get(key) or {}).get("name") == resolved.name:
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


# --------------------------------------------------------------------------------------------
# Settings



@lru_cache(maxsize=8)
def _weights_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(path)


def weights_sha256(path: str) -> str:
    """The weights file's sha256, computed once per process for each version of the file."""
    stat = os.stat(path)
    return _weights_sha256(path, stat.st_size, stat.st_mtime_ns)


def make_settings(n_segments: int, num_steps: Optional[int], features: Optional[str],
                  weights: Optional[Path], connectivity: bool, min_size_factor: float,
                  max_size_factor: float, grid: str = "calibrated", fused: bool = True,
                  position_weight: Optional[float] = None, mask_dir: Optional[Path] = None
                  ) -> tuple[dict, Optional[str]]:
    """(settings, weights path): everything that decides the labels, as recorded per image.

    ``num_steps`` and ``position_weight`` None are the model's (its metadata,
    :mod:`ssn.model_metadata`); the values recorded are those it runs with.
    ``position_weight`` is recorded only when it is not 1, and ``mask_dir`` (as an
    absolute path) only when given, so records written before they existed still
    match the defaults.

    Every value is checked here, once, so that a run with an option that can never
    work stops before any work (and before ``--overwrite`` replaces anything): the
    counts, the size factors, and the weights, loaded into a small net.

    Raises
    ------
    ValueError, TypeError, FileNotFoundError
        A count below 1, size factors that are not finite or out of order, a mode
        without weights, a missing file, weights that do not fit the net
        (:class:`ssn.nets.checks.NetCheckError`, naming the file and layer), or a
        ``mask_dir`` that is not a folder.
    """
    n_segments = count_argument("n_segments", n_segments)
    if connectivity:
        min_size_factor, max_size_factor = size_factors(min_size_factor, max_size_factor)
    mode, weights_path = resolve_features(features, weights)
    if weights_path is not None:
        check_weights(weights_path)
    num_steps, position_weight = model_defaults(model_settings(weights_path), num_steps,
                                                position_weight)
    settings = dict(n_segments=n_segments, grid=grid, fused=fused, num_steps=num_steps,
                    features=mode,
                    weights_sha256=weights_sha256(weights_path) if weights_path else None,
                    connectivity=connectivity,
                    min_size_factor=min_size_factor if connectivity else None,
                    max_size_factor=max_size_factor if connectivity else None,
                    version=__version__)
    if position_weight != 1.0:
        settings["position_weight"] = float(position_weight)
    if mask_dir is not None:
        if not Path(mask_dir).is_dir():
            raise ValueError(f"--mask-dir {mask_dir} is not a folder")
        settings["mask_dir"] = str(Path(mask_dir).absolute())
    return settings, weights_path


def settings_difference(old: dict, new: dict) -> str:
    """'settings differ (then -> now): n_segments 100 -> 200, ...'."""
    keys = sorted(set(old) | set(new))
    return "settings differ (then -> now): " + ", ".join(
        f"{key} {old.get(key)} -> {new.get(key)}" for key in keys if old.get(key) != new.get(key))


# --------------------------------------------------------------------------------------------
# Records and their verification


def record_path(out: Path, name: str) -> Path:
    return out / f"{name}{RECORD_SUFFIX}"


def output_paths(out: Path, name: str) -> dict[str, Path]:
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
    return {field: record.get(field, "") for field in SUMMARY_FIELDS}


# --------------------------------------------------------------------------------------------
# The per-image task


_COMPUTE = threading.Lock()  # Caffe nets are per process, not per thread (Dask workers
                             # may run several tasks at once)


@lru_cache(maxsize=1)
def _thread_controller():
    from threadpoolctl import ThreadpoolController
    return ThreadpoolController()


def limit_threads(threads: Optional[int]):
    """A context in which OpenMP and BLAS use ``threads`` threads (None: as they are)."""
    if not threads:
        return contextlib.nullcontext()
    return _thread_controller().limit(limits=threads)


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        path.unlink(missing_ok=True)


def _write_outputs(out: Path, name: str, rgb: np.ndarray, labels: np.ndarray) -> dict:
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


def _output_error(out: Path, error: OSError) -> RunError:
    reason = error.strerror or str(error)
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        reason = "no space left on the device"
    return RunError(f"cannot write to {out}: {reason}; nothing half-written is left and "
                    "finished images are kept: free space or fix the folder, then rerun to "
                    "complete the rest")


def _check_weights(job: Job) -> None:
    expected = job.settings.get("weights_sha256")
    if not expected:
        return
    try:
        actual = weights_sha256(job.weights)
    except OSError as error:
        raise RunError(f"cannot read the weights {job.weights}: {error.strerror}") from error
    if actual != expected:
        raise RunError(f"the weights {job.weights} on {socket.gethostname()} differ from the "
                       "ones this run was started with (sha256 mismatch)")


def _new_record(job: Job, item: Item) -> dict:
    return dict(tool=TOOL, format=RECORD_FORMAT, image=item.image, output=item.name,
                requested=job.settings["n_segments"], settings=job.settings)


# Errors of one image's output names, not of --out: that image fails, the run goes on.
NAME_ERRNOS = (errno.ENAMETOOLONG, errno.EILSEQ)


def _name_failure(job: Job, item: Item, error: OSError) -> dict:
    """The summary row of an image whose outputs cannot be named in --out (no record can
    be written either: run() lists it in the summary)."""
    reason = (f"failed: its outputs cannot be named {item.name!r} in {job.out} "
              f"({error.strerror or error}): rename the image")
    row = dict(summary_row(_new_record(job, item)), status=reason)
    return dict(row, outcome="failed", recorded=False)


def record_failure(job: Job, item: Item, reason: str) -> dict:
    """Record that ``item`` failed and why, in place of its results (which no longer
    describe the image); return its summary row.

    Raises
    ------
    RunError
        If --out cannot be written.
    """
    out = Path(job.out)
    record = dict(_new_record(job, item), status=f"failed: {reason}")
    try:
        _remove([record_path(out, item.name), *output_paths(out, item.name).values()])
        write_atomic(record_path(out, item.name), json.dumps(record, indent=1))
    except OSError as error:
        if error.errno in NAME_ERRNOS:
            return _name_failure(job, item, error)
        raise _output_error(out, error) from error
    return dict(summary_row(record), outcome="failed")


def segment(rgb: np.ndarray, job: Job, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """The labels of one RGB image with the job's settings (with a ``mask``: 0 outside
    it, from 1 inside)."""
    settings = job.settings
    factors = {}
    if settings["connectivity"]:
        factors = dict(min_size_factor=settings["min_size_factor"],
                       max_size_factor=settings["max_size_factor"])
    return superpixels(rgb, settings["n_segments"], num_steps=settings["num_steps"],
                       weights=job.weights,
                       enforce_connectivity=settings["connectivity"],
                       features=settings["features"], grid=settings["grid"],
                       fused=settings["fused"],
                       position_weight=settings.get("position_weight", 1.0), mask=mask,
                       **factors)


def read_item_mask(job: Job, item: Item, shape: tuple[int, int]
                   ) -> tuple[Optional[np.ndarray], Optional[dict]]:
    """(mask, its identity for the record) of an image when the job has a mask folder,
    else (None, None).

    Raises
    ------
    ValueError
        The mask is missing, unreadable or of another size than the image.
    """
    mask_dir = job.settings.get("mask_dir")
    if not mask_dir:
        return None, None
    path = find_mask(mask_dir, item.name)
    try:
        identity = dict(path=str(path), **source_identity(str(path)))
    except OSError:
        raise ValueError(f"no mask {path}") from None
    return read_mask(path, shape), identity


def process(job: Job, item: Item) -> dict:
    """Make sure one image's results are in ``job.out``; return its summary row.

    Verified results are kept (``outcome`` 'verified') unless ``job.overwrite``;
    otherwise the image is read, segmented and its files written, all or none,
    then its record (``outcome`` 'computed'). An image that cannot be read or
    segmented gets a record saying why (``outcome`` 'failed'); its older results
    are removed, as they no longer describe it.

    Raises
    ------
    RunError
        When no image could succeed: the device cannot be used, the weights differ
        from the run's, or --out cannot be written (full disk, permissions).
    """
    out = Path(job.out)
    try:
        use_device(job.gpu)
    except ValueError as error:
        raise RunError(f"{socket.gethostname()}: {error}") from error
    _check_weights(job)
    if not job.overwrite:
        record, _ = verify(item, out, job.settings)
        if record is not None:
            return dict(summary_row(record), outcome="verified")
    record = _new_record(job, item)
    outputs = output_paths(out, item.name)
    start = time.perf_counter()
    try:
        source = source_identity(item.image) if os.path.isfile(item.image) else None
        rgb = read_image(Path(item.image))
        mask, mask_record = read_item_mask(job, item, rgb.shape[:2])
        with _COMPUTE, limit_threads(job.threads):
            labels = segment(rgb, job, mask)
    except Exception as error:  # noqa: BLE001 - one bad image must not stop the run
        message = str(error) if isinstance(error, (ValueError, OSError)) else \
            f"{type(error).__name__}: {error}"
        return record_failure(job, item, message)
    seconds = time.perf_counter() - start
    record.update(height=rgb.shape[0], width=rgb.shape[1],
                  actual=int(labels.max()) + (1 if mask is None else 0),
                  seconds=f"{seconds:.3f}", status="ok", source=source,
                  threads=job.threads, host=socket.gethostname())
    if mask_record is not None:
        record["mask"] = mask_record
    try:
        # While the files change, the record says 'incomplete': an interrupted rewrite is
        # never taken as done, and its files are still known as ours (not inputs).
        pending = dict(record, status="incomplete",
                       files={key: dict(name=path.name) for key, path in outputs.items()})
        write_atomic(record_path(out, item.name), json.dumps(pending, indent=1))
        record["files"] = _write_outputs(out, item.name, rgb, labels)
    except OSError as error:
        with contextlib.suppress(OSError):  # nothing unverifiable left: no files, no record
            _remove([*outputs.values(), record_path(out, item.name)])
        if error.errno in NAME_ERRNOS:
            return _name_failure(job, item, error)
        raise _output_error(out, error) from error
    try:
        write_atomic(record_path(out, item.name), json.dumps(record, indent=1))
    except OSError as error:
        _remove(outputs.values())  # files without a record would be unverifiable
        if error.errno in NAME_ERRNOS:
            return _name_failure(job, item, error)
        raise _output_error(out, error) from error
    return dict(summary_row(record), outcome="computed")


# What the engines run: one image, the weights check of a Dask worker, and the record of
# an image whose workers died.
TASKS = engines.Tasks(run=process, check=_check_weights, lost=record_failure)


# --------------------------------------------------------------------------------------------
# The output folder: checks before a run, the summary after it


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
def _folder_lock(out: Path):
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
    with _folder_lock(out):
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
            raise _output_error(out, error) from error
    return rows


# --------------------------------------------------------------------------------------------
# A run


def _engine(args: argparse.Namespace, job: Job, items: list[Item], workers: int):
    if args.scheduler or args.dask:
        return engines.run_dask(TASKS, job, items, scheduler=args.scheduler, workers=workers)
    if workers > 1:
        return engines.run_processes(TASKS, job, items, workers)
    return engines.run_here(TASKS, job, items)


def run(args: argparse.Namespace) -> int:
    """The ``ssn-infer`` command once its arguments are parsed (see ssn/cli/infer.py).

    Returns
    -------
    int
        0: every image done; 1: some images failed (reported, recorded, the rest
        done); 2: nothing or not everything could run (a bad option or --out, a
        full disk, a device this Caffe lacks), with one message saying why; 130
        or 143: stopped by Ctrl-C or SIGTERM (worker processes stopped, finished
        images kept).
    """
    out = args.out.absolute()
    try:
        if not args.scheduler:  # a cluster's workers check their own device
            use_device(args.gpu)
        settings, weights = make_settings(
            args.n_segments, args.num_steps, args.features, args.weights, args.connectivity,
            args.min_size_factor, args.max_size_factor, args.grid, args.fused,
            args.position_weight, getattr(args, "mask_dir", None))
    except (ValueError, TypeError, OSError) as error:
        log.error("%s; nothing was done", error)
        return 2
    problems: list[tuple[str, str]] = []
    paths = [path for path in expand_inputs(args.inputs, problems)
             if not is_output(path, out)]
    for where, why in problems:
        log.error("%s: %s", printable(where), why)
    if not paths:
        log.error("no images found in %s", " ".join(map(printable, args.inputs)))
        return 2
    # Inputs that are not done: listed in the summary (their own row, no record).
    unrecorded = [dict(image=where, output="", status=f"failed: {why}")
                  for where, why in problems]
    items = []
    inputs = {_resolved(path) for path in paths}
    for item in assign_names(paths):
        targets = [record_path(out, item.name), *output_paths(out, item.name).values()]
        clash = [target for target in targets if _resolved(target) in inputs]
        if clash:  # x.png and an input named x_overlay.png in --out: never overwrite it
            why = f"its results would replace the input {printable(str(clash[0]))}"
            log.error("%s: %s", printable(item.image), why)
            problems.append((item.image, why))
            unrecorded.append(dict(image=item.image, output=item.name,
                                   status=f"failed: {why}"))
        else:
            items.append(item)
    if not items:
        log.error("no image can be done; nothing was done")
        return 2
    try:
        check_out(out)
    except RunError as error:
        log.error("%s", error)
        return 2
    remove_stale_temporaries(out, time.time())
    found = [] if args.overwrite else conflicts(out, items, settings)
    if found:
        log.error("%s holds results this run would replace: %s. Choose another --out, or "
                  "add --overwrite to recompute them with these settings", out,
                  "; ".join(found))
        return 2
    args.workers = args.workers or engines.available_cores()
    # Local processes: no more than images; each with its share of the cores.
    workers = args.workers if args.dask else min(args.workers, len(items))
    threads = args.threads
    if threads is None and not args.scheduler and workers > 1:
        threads = engines.threads_per_worker(workers)
    job = Job(str(out), settings, weights, args.gpu, args.overwrite, threads)
    config = {key: (str(value) if isinstance(value, Path) else value)
              for key, value in vars(args).items()}
    config.update(tool=TOOL, settings=settings, threads=threads)
    try:
        write_atomic(out / "config.json", json.dumps(config, indent=1))
    except OSError as error:
        log.error("%s", _output_error(out, error))
        return 2
    counts = dict(computed=0, verified=0, failed=0)
    progress = tqdm(total=len(items), unit="image", file=sys.stderr,
                    disable=not sys.stderr.isatty())
    start, status = time.perf_counter(), 0
    try:
        # closing: an interruption in this loop stops the engine's workers at once
        with sigterm_stops_the_run(), \
                contextlib.closing(_engine(args, job, items, workers)) as rows:
            for row in rows:
                counts[row["outcome"]] += 1
                if row["outcome"] == "failed":
                    log.error("%s: %s", printable(row["image"]),
                              row["status"].removeprefix("failed: "))
                if row.get("recorded") is False:
                    unrecorded.append(row)
                progress.update()
    except RunError as error:
        log.error("%s", error)
        status = 2
    except KeyboardInterrupt as error:
        terminated = isinstance(error, Terminated)
        log.error("%s: finished images are kept; rerun to complete the rest",
                  "terminated" if terminated else "interrupted")
        status = 143 if terminated else 130
    finally:
        progress.close()
    seconds = time.perf_counter() - start
    try:
        write_summary(out, settings, items, unrecorded)
    except RunError as error:
        log.error("%s", error)
        return 2
    counts["failed"] += len(problems)
    log.info("%d image(s) computed (%.2f images/s), %d verified and kept, %d failed; "
             "results in %s", counts["computed"], counts["computed"] / max(seconds, 1e-9),
             counts["verified"], counts["failed"], out)
    return status or (1 if counts["failed"] else 0)
