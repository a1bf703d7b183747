"""Evaluate superpixels against BSDS500 ground truth, next to SLIC.

Protocol: every (image, annotator) pair is one row (ASA, boundary recall and
precision with tolerance round(0.0025 x diagonal), undersegmentation error,
compactness, explained variation; see ssn.evaluation.metrics); a method's figure at one
requested count is the mean over rows, plotted against the mean actual number
of superpixels, and interpolated at matched actual counts (matched.csv,
matched.md). Methods: label maps in folders (ssn-infer output, <stem>.npy:
--labels NAME=DIR), and at each --n-segments count SSN and the classical
baselines of ssn.evaluation.baselines (--methods). Any folder of images with
ground truths (--images, --gt) works as well as a BSDS500 split. Writes
rows.csv (as it goes), skipped.csv, summary.csv, summary.json and curves.png to
--out.
"""
from __future__ import annotations

import csv
import hashlib
import io
import json
import logging
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import scipy.io
from skimage import io as skio
from tqdm import tqdm

from ssn.atomic import atomic_path, write_atomic
from ssn.bsds import BSDSImage, data_root, load_bsds, read_split
from ssn.evaluation.baselines import BaselineMissing, baseline
from ssn.evaluation.matched import MATCHED_METRICS, format_table, matched_table
from ssn.evaluation.metrics import evaluate
from ssn.evaluation.plots import metric_panels
from ssn.images import IMAGE_SUFFIXES, as_rgb
from ssn.inference import superpixels

log = logging.getLogger("ssn.evaluation.runs")
METRICS = ("asa", "boundary_recall", "boundary_precision", "undersegmentation_error",
           "compactness", "explained_variation")
GT_SUFFIXES = {".mat", ".npy", ".png", ".tif", ".tiff"}
SKIPPED_FIELDS = ["method", "requested", "image", "reason"]


Run = tuple  # (method name, requested count, function(stem, rgb) -> H x W labels)


def folder_run(name: str, folder: Path) -> Run:
    """Label maps computed earlier: ``folder/<image id>.npy`` (e.g. by ssn-infer).

    A folder with ssn-infer's records (``<name>.ssn.json``) is read through them
    (:func:`folder_records`): its requested count is the records', and a label file
    is scored only if its record says it was made and it is the file the record
    names. Other folders' requested count comes from their config.json, if any.

    Raises
    ------
    ValueError
        The folder's records are stale or mixed (see :func:`folder_records`).
    """
    folder = Path(folder)
    records, settings = folder_records(folder)
    if records:
        return name, settings["n_segments"], lambda stem, rgb: recorded_labels(
            folder, records, stem)
    config = folder / "config.json"
    settings = json.loads(config.read_text()) if config.exists() else {}
    requested = settings.get("n_segments", settings.get("n_spixels", 0))
    return name, requested, lambda stem, rgb: read_labels(folder / f"{stem}.npy")


def folder_records(folder: Path) -> tuple[dict[str, dict], Optional[dict]]:
    """({output name: record}, the settings they share) of ssn-infer's records in
    ``folder``; ({}, None) for a folder without records.

    Raises
    ------
    ValueError
        If the folder is stale (a record whose settings differ from the folder's
        config.json: ssn-infer's summary calls it 'stale') or mixed (records of several
        settings), naming the images and what differs: such a folder's figures would
        not be of one method at one count.
    """
    from ssn.infer.job import settings_difference
    from ssn.infer.records import read_record, record_path
    records = {}
    for path in sorted(folder.rglob("*.ssn.json")):
        record = read_record(path)
        if record is not None and record_path(folder, str(record.get("output"))) == path:
            records[record["output"]] = record
    if not records:
        return {}, None
    made = {name: record for name, record in records.items()
            if record.get("status") == "ok" and isinstance(record.get("settings"), dict)}
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text()) if config_path.exists() else {}
    except (OSError, ValueError):
        config = {}
    expected = config.get("settings") if isinstance(config, dict) else None

    def listed(names: list[str]) -> str:
        return ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")

    if isinstance(expected, dict):
        stale = defaultdict(list)
        for name, record in made.items():
            if record["settings"] != expected:
                stale[settings_difference(record["settings"], expected)].append(name)
        if stale:
            raise ValueError(f"--labels {folder} is stale: the labels of " + "; ".join(
                f"{listed(names)} ({why.replace('then -> now', 'labels -> config.json')})"
                for why, names in stale.items()) + ": rerun ssn-infer on that folder to "
                "bring them up to date, or give a folder of one run")
    kinds = defaultdict(list)
    for name, record in made.items():
        kinds[json.dumps(record["settings"], sort_keys=True)].append(name)
    if len(kinds) > 1:
        groups = [(json.loads(key), names) for key, names in kinds.items()]
        first = groups[0][0]
        raise ValueError(f"--labels {folder} mixes labels of {len(groups)} settings: " +
                         "; ".join(f"{listed(names)}: " + (
                             "these settings" if settings == first else
                             settings_difference(first, settings).replace(
                                 "settings differ (then -> now)", "against the first"))
                             for settings, names in groups) +
                         ": give one folder per setting")
    settings = next(iter(made.values()))["settings"] if made else expected
    if not isinstance(settings, dict):
        raise ValueError(f"--labels {folder}: no image there has labels (every record "
                         "says its image failed)")
    return records, settings


def recorded_labels(folder: Path, records: dict[str, dict], stem: str) -> np.ndarray:
    """The labels of ``stem`` as its record names them, or an error saying why not."""
    record = records.get(stem)
    if record is None:
        raise FileNotFoundError(f"no record {folder / stem}.ssn.json of its labels")
    if record.get("status") != "ok":
        raise ValueError(f"its record says: {record.get('status')}")
    spec = (record.get("files") or {}).get("npy") or {}
    path = folder / str(spec.get("name"))
    try:
        data = path.read_bytes()
    except OSError as error:
        raise FileNotFoundError(f"no label file {path} ({error.strerror})") from error
    if len(data) != spec.get("size") or hashlib.sha256(data).hexdigest() != spec.get("sha256"):
        raise ValueError(f"{path.name} is not the file its record names (changed since "
                         "ssn-infer wrote it)")
    try:
        return np.load(io.BytesIO(data), allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        raise ValueError(f"cannot read label file {path}: {error}") from error


def read_labels(path: Path) -> np.ndarray:
    """A label map saved as .npy, or a ValueError/FileNotFoundError saying what is wrong."""
    if not path.is_file():
        raise FileNotFoundError(f"no label file {path}")
    if path.stat().st_size == 0:
        raise ValueError(f"label file {path} is empty")
    try:
        return np.load(path, allow_pickle=False)
    except (ValueError, EOFError, OSError) as error:
        raise ValueError(f"cannot read label file {path}: {error}") from error


def checked_labels(labels, shape: tuple[int, int]) -> np.ndarray:
    """``labels`` as an integer H x W map, or a ValueError saying why they are not one."""
    labels = np.asarray(labels)
    if labels.shape != tuple(shape):
        raise ValueError(f"labels are {labels.shape}, the image is {tuple(shape)}")
    if not np.issubdtype(labels.dtype, np.integer):
        if not np.issubdtype(labels.dtype, np.number) or labels.dtype == bool:
            raise ValueError(f"labels must be integers, got {labels.dtype}")
        if not np.all(np.isfinite(labels)) or np.any(labels != np.round(labels)):
            raise ValueError("labels must be whole numbers, got fractions, NaN or infinity")
    return labels.astype(np.int64)


def ssn_run(count: int, features: Optional[str], num_steps: Optional[int],
            weights: Optional[Path], grid: str = "calibrated",
            position_weight: Optional[float] = None, label: Optional[str] = None) -> Run:
    """SSN computed here, named SSN-<label, default: the features> (then -original with
    that grid, -pw<W> with a position weight given and other than 1). ``num_steps`` and
    ``position_weight`` None are the model's (:mod:`ssn.model_metadata`)."""
    name = f"SSN-{label or features or 'auto'}" + ("" if grid == "calibrated" else f"-{grid}")
    if position_weight is not None and position_weight != 1.0:
        name += f"-pw{position_weight:g}"
    return (name, count, lambda stem, rgb: superpixels(
        rgb, count, num_steps=num_steps, weights=weights, features=features, grid=grid,
        position_weight=position_weight))


def baseline_run(name: str, count: int, compactness: Optional[float] = None) -> Run:
    """A classical method of :mod:`ssn.evaluation.baselines`; scikit-image's is "SLIC".

    Raises BaselineMissing when its optional package is not installed.
    """
    labeller = baseline(name, compactness)
    title = "SLIC" if name == "slic" else name
    if compactness is not None:
        title += f"-c{compactness:g}"
    return title, count, lambda stem, rgb: labeller(rgb, count)


def baseline_runs(methods, count: int, compactness: dict, missing: set) -> list[Run]:
    """The runs of the classical ``methods`` (any "ssn" among them is skipped) at
    ``count``; a method whose package is absent is logged once, added to ``missing``
    and left out."""
    runs = []
    for method in methods:
        if method != "ssn" and method not in missing:
            try:
                runs.append(baseline_run(method, count, compactness.get(method)))
            except BaselineMissing as error:
                missing.add(method)
                log.warning("skipping %s: %s", method, error)
    return runs


def bsds_samples(split: str, root: Optional[Path], limit: Optional[int]
                 ) -> list[tuple[str, Callable[[], BSDSImage]]]:
    """(image id, loader) for a BSDS500 split; an image without a ground truth is
    reported and left out."""
    ids = read_split(split, root)[:limit]
    truths = data_root(root) / "groundTruth" / split
    missing = [image_id for image_id in ids if not (truths / f"{image_id}.mat").is_file()]
    for image_id in missing:
        log.warning("no ground truth for %s (no %s): not evaluated", image_id,
                    truths / f"{image_id}.mat")
    return [(image_id, lambda image_id=image_id: load_bsds(image_id, split, root))
            for image_id in ids if image_id not in missing]


def read_ground_truth(path: Path) -> list[np.ndarray]:
    """Label maps of one image: a BSDS .mat (all annotators), a .npy (H x W or
    A x H x W) or a label image (.png, .tif).

    Raises
    ------
    ValueError
        If the file is empty or cannot be read as label maps.
    """
    if path.stat().st_size == 0:
        raise ValueError(f"ground truth {path} is empty")
    try:
        if path.suffix == ".mat":
            cells = scipy.io.loadmat(path)["groundTruth"]
            return [integer_truth(cells[0, j]["Segmentation"][0, 0], path).astype(np.int32)
                    for j in range(cells.shape[1])]
        array = np.load(path, allow_pickle=False) if path.suffix == ".npy" else skio.imread(path)
        array = np.asarray(array)
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad file
        if isinstance(error, TruthError):
            raise
        raise ValueError(f"cannot read ground truth {path} ({type(error).__name__}: "
                         f"{error})") from error
    if array.ndim not in (2, 3):
        raise ValueError(f"ground truth {path} is {array.shape}: expected H x W or A x H x W")
    array = integer_truth(array, path)
    return list(array) if array.ndim == 3 else [array]


class TruthError(ValueError):
    """A ground truth that reads but is not label maps."""


def integer_truth(array, path: Path) -> np.ndarray:
    """``array`` as int64 labels, or a :class:`TruthError`: fractional, NaN or infinite
    values, or values that are not numbers, are not labels (a cast would make them
    some)."""
    array = np.asarray(array)
    if array.dtype == bool or not np.issubdtype(array.dtype, np.number) or \
            np.issubdtype(array.dtype, np.complexfloating):
        raise TruthError(f"ground truth {path} holds {array.dtype} values, not labels")
    if not np.issubdtype(array.dtype, np.integer):
        finite = np.isfinite(array)
        if not finite.all() or np.any(array != np.round(array)):
            raise TruthError(f"ground truth {path} must hold whole numbers, got "
                             f"{int((~finite).sum())} NaN or infinite and "
                             f"{int((finite & (array != np.round(array))).sum())} fractional "
                             "value(s)")
    return array.astype(np.int64)


def folder_samples(images: Path, ground_truth: Path, limit: Optional[int]
                   ) -> list[tuple[str, Callable[[], BSDSImage]]]:
    """(stem, loader) for every image in ``images`` with a ground truth of the same
    stem in ``ground_truth`` (.mat, .npy, .png or .tif); the others are reported.

    Raises
    ------
    ValueError
        If a stem has two ground truths (``a.mat`` and ``a.npy``), or no image has one.
    """
    found = defaultdict(list)
    for path in sorted(ground_truth.iterdir()):
        if path.suffix in GT_SUFFIXES:
            found[path.stem].append(path)
    ambiguous = {stem: paths for stem, paths in found.items() if len(paths) > 1}
    if ambiguous:
        raise ValueError(f"{len(ambiguous)} image(s) have more than one ground truth in "
                         f"{ground_truth}, and which is meant cannot be told: " + "; ".join(
                             " and ".join(path.name for path in paths)
                             for paths in list(ambiguous.values())[:5]) +
                         ": keep one file per stem")
    truths = {stem: paths[0] for stem, paths in found.items()}
    pairs = []
    for path in sorted(images.iterdir()):
        if path.suffix.lower() not in IMAGE_SUFFIXES:
            continue
        if path.stem in truths:
            pairs.append((path.stem, path))
        else:
            log.warning("no ground truth for %s in %s (<stem>%s): not evaluated", path.name,
                        ground_truth, "/".join(sorted(GT_SUFFIXES)))
    if not pairs:
        raise ValueError(f"no image in {images} has a ground truth in {ground_truth}")

    def loader(path: Path, truth: Path) -> BSDSImage:
        return BSDSImage(rgb=skio.imread(path), segmentations=read_ground_truth(truth))
    return [(stem, lambda path=path, stem=stem: loader(path, truths[stem]))
            for stem, path in pairs[:limit]]


def load_sample(load: Callable[[], BSDSImage]) -> tuple[np.ndarray, list]:
    """(float RGB image, segmentations) of one sample, or an exception saying why not."""
    sample = load()
    rgb = as_rgb(sample.rgb)
    if not sample.segmentations:
        raise ValueError("the ground truth holds no segmentation")
    for segmentation in sample.segmentations:
        if np.shape(segmentation) != rgb.shape[:2]:
            raise ValueError(f"a ground-truth segmentation is {np.shape(segmentation)}, the "
                             f"image is {rgb.shape[:2]}")
    return rgb, sample.segmentations


def reason(error: Exception) -> str:
    """An exception as one line for a report."""
    if isinstance(error, (ValueError, OSError)):
        return str(error)
    return f"{type(error).__name__}: {error}"


class RowWriter:
    """Appends rows to a CSV as they are computed, one write and fsync per batch.

    Appending costs O(rows); rewriting the file atomically after each image
    would cost O(rows^2) on a full BSDS evaluation. The file is emptied when
    the writer starts, so no row of an earlier run survives; a kill loses at
    most the batch being written.
    """

    def __init__(self, path: Optional[Path]) -> None:
        self.path, self.fields = path, None
        if path is not None:
            write_atomic(path, "")

    def add(self, rows: list[dict]) -> None:
        if self.path is None or not rows:
            return
        text = io.StringIO()
        writer = csv.DictWriter(text, fieldnames=self.fields or list(rows[0]))
        if self.fields is None:
            self.fields = list(rows[0])
            writer.writeheader()
        writer.writerows(rows)
        with open(self.path, "a", newline="") as stream:
            stream.write(text.getvalue())
            stream.flush()
            os.fsync(stream.fileno())


def evaluate_runs(runs, samples, rows_csv: Optional[Path] = None,
                  skipped: Optional[list] = None, load=load_sample, score=None
                  ) -> list[dict]:
    """Rows of every (run, image, annotator); ``samples`` are (image id, loader) pairs.

    ``load(loader)`` gives an image's (float RGB, truth), and ``score(labels,
    truth, rgb)`` its rows; the defaults score BSDS-style segmentations
    (:func:`ssn.evaluation.metrics.evaluate`). Other truths (a continuous
    target, :mod:`ssn.evaluation.continuous`) pass their own.

    A problem with one image (an unreadable image or ground truth; a missing,
    empty or wrong-shaped label file; a method failing on it) is logged and
    appended to ``skipped`` as dict(method, requested, image, reason), and the
    rest is still scored. With ``rows_csv``, rows are appended to that file as
    each (run, image) is scored.
    """
    skipped = [] if skipped is None else skipped
    score = evaluate if score is None else score
    writer = RowWriter(rows_csv)
    rows = []

    def skip(method: str, requested, image_id: str, why: str) -> None:
        log.warning("%s: %s not scored: %s", method, image_id, why)
        skipped.append(dict(method=method, requested=requested, image=image_id, reason=why))

    loaded = []
    for image_id, loader in samples:
        try:
            loaded.append((image_id, *load(loader)))
        except Exception as error:  # noqa: BLE001 - one bad image must not stop the rest
            skip("*", "*", image_id, reason(error))
    progress = tqdm(total=len(runs) * len(loaded), unit="map", file=sys.stderr,
                    disable=not sys.stderr.isatty())
    # Run-major order: consecutive images reuse one run's nets (a deep net at 481x321
    # holds over a GB; a net per run and geometry cached at once ran out of memory).
    for name, requested, make_labels in runs:
        for image_id, rgb, truth in loaded:
            progress.update(1)
            try:
                labels = checked_labels(make_labels(image_id, rgb), rgb.shape[:2])
                scored = [dict(method=name, requested=requested, image=image_id, **row)
                          for row in score(labels, truth, rgb)]
            except Exception as error:  # noqa: BLE001 - one bad image must not stop the rest
                skip(name, requested, image_id, reason(error))
                continue
            rows += scored
            writer.add(scored)
    progress.close()
    return rows


def summarise(rows: list[dict], metrics=METRICS) -> list[dict]:
    groups = defaultdict(list)
    for row in rows:
        groups[(row["method"], row["requested"])].append(row)
    summary = []
    for (method, requested), group in sorted(groups.items()):
        entry = dict(method=method, requested=requested, rows=len(group),
                     n_spixels=float(np.mean([r["n_spixels"] for r in group])))
        entry.update({m: float(np.mean([r[m] for r in group])) for m in metrics})
        summary.append(entry)
    return summary


def score_into(out: Path, runs, samples, **kwargs) -> tuple[list[dict], list[dict]]:
    """:func:`evaluate_runs` with rows into ``out``/rows.csv and the (method, image)
    pairs not scored into ``out``/skipped.csv; returns (rows, skipped).

    Logs an error when nothing could be scored.
    """
    skipped: list[dict] = []
    rows = evaluate_runs(runs, samples, out / "rows.csv", skipped, **kwargs)
    write_csv(out / "skipped.csv", skipped, SKIPPED_FIELDS)
    if not rows:
        log.error("nothing could be scored: %d problem(s), listed in %s", len(skipped),
                  out / "skipped.csv")
    return rows, skipped


def exit_status(skipped: list[dict], out: Path) -> int:
    """0 when every pair was scored; else 1, with a warning that points at skipped.csv."""
    if not skipped:
        return 0
    log.warning("%d (method, image) pair(s) not scored, listed in %s", len(skipped),
                out / "skipped.csv")
    return 1


def write_csv(path: Path, rows: list[dict], fields: Optional[list[str]] = None) -> None:
    """Rows (dicts with ``fields``, default the first row's keys) as CSV, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=fields or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def write_results(rows: list[dict], out: Path, matched_counts, metrics=METRICS,
                  matched_metrics=MATCHED_METRICS,
                  table_metrics=("asa", "boundary_recall")) -> tuple[list, list]:
    """Write summary.csv/.json, curves.png, matched.csv and matched.md of scored rows
    to ``out``; return the summary and the matched table."""
    summary = summarise(rows, metrics)
    write_csv(out / "summary.csv", summary)
    write_atomic(out / "summary.json", json.dumps(summary, indent=1))
    plot_curves(summary, out / "curves.png", metrics)
    matched = matched_table(summary, matched_counts, matched_metrics)
    write_csv(out / "matched.csv", matched)
    write_atomic(out / "matched.md", format_table(matched, table_metrics))
    return summary, matched


def plot_curves(summary: list[dict], path: Path, metrics=METRICS, columns: int = 3) -> None:
    """One panel per metric: the metric against the mean actual superpixel count."""
    methods = sorted({row["method"] for row in summary})
    with metric_panels(path, metrics, columns=min(columns, len(metrics))) as panels:
        for axis, metric in panels:
            for method in methods:
                points = sorted((r["n_spixels"], r[metric]) for r in summary
                                if r["method"] == method)
                axis.plot(*zip(*points), marker="o", label=method)
            axis.set_xlabel("superpixels (mean actual count)")
        panels[0][0].legend()
