"""Evaluate superpixels against BSDS500 ground truth, next to SLIC.

Protocol: every (image, annotator) pair is one row (ASA, boundary recall and
precision with tolerance round(0.0025 x diagonal), undersegmentation error,
compactness, explained variation; see ssn.evaluation.metrics); a method's figure at one
requested count is the mean over rows, plotted against the mean actual number
of superpixels. Methods: label maps in directories (tools/infer.py output,
<stem>.npy), SSN run here (--ssn COUNTS), scikit-image SLIC (--slic COUNTS).
Any folder of images with ground truths (--images, --gt) works as well as a
BSDS500 split. Writes rows.csv, summary.csv, summary.json and curves.png to --out.
"""
from __future__ import annotations

import csv
import json
import logging
import sys
from collections import defaultdict
from pathlib import Path
from typing import Callable, Optional

import numpy as np
import scipy.io
from skimage import io as skio
from tqdm import tqdm

from ssn.atomic import atomic_path
from ssn.bsds import BSDSImage, load_bsds, read_split
from ssn.evaluation.baselines import baseline
from ssn.evaluation.metrics import evaluate
from ssn.evaluation.plots import metric_panels
from ssn.images import IMAGE_SUFFIXES
from ssn.inference import as_rgb, superpixels

log = logging.getLogger("ssn.evaluation.runs")
METRICS = ("asa", "boundary_recall", "boundary_precision", "undersegmentation_error",
           "compactness", "explained_variation")
GT_SUFFIXES = {".mat", ".npy", ".png", ".tif", ".tiff"}


Run = tuple  # (method name, requested count, function(stem, rgb) -> H x W labels)


def folder_run(name: str, folder: Path) -> Run:
    """Label maps computed earlier: ``folder/<image id>.npy`` (e.g. by ssn-infer).

    The requested count comes from the folder's config.json, when it has one.
    """
    folder = Path(folder)
    config = folder / "config.json"
    settings = json.loads(config.read_text()) if config.exists() else {}
    requested = settings.get("n_segments", settings.get("n_spixels", 0))
    return name, requested, lambda stem, rgb: np.load(folder / f"{stem}.npy")


def ssn_run(count: int, features: Optional[str], num_steps: int,
            weights: Optional[Path]) -> Run:
    """SSN computed here, named SSN-<features>."""
    return (f"SSN-{features or 'auto'}", count, lambda stem, rgb: superpixels(
        rgb, count, num_steps, weights, features=features))


def baseline_run(name: str, count: int, compactness: Optional[float] = None) -> Run:
    """A classical method of :mod:`ssn.evaluation.baselines`; scikit-image's is "SLIC".

    Raises BaselineMissing when its optional package is not installed.
    """
    labeller = baseline(name, compactness)
    title = "SLIC" if name == "slic" else name
    if compactness is not None:
        title += f"-c{compactness:g}"
    return title, count, lambda stem, rgb: labeller(rgb, count)


def bsds_samples(split: str, root: Optional[Path], limit: Optional[int]
                 ) -> list[tuple[str, Callable[[], BSDSImage]]]:
    """(image id, loader) for a BSDS500 split."""
    return [(image_id, lambda image_id=image_id: load_bsds(image_id, split, root))
            for image_id in read_split(split, root)[:limit]]


def read_ground_truth(path: Path) -> list[np.ndarray]:
    """Label maps of one image: a BSDS .mat (all annotators), a .npy (H x W or
    A x H x W) or a label image (.png, .tif)."""
    if path.suffix == ".mat":
        cells = scipy.io.loadmat(path)["groundTruth"]
        return [cells[0, j]["Segmentation"][0, 0].astype(np.int32)
                for j in range(cells.shape[1])]
    array = np.load(path) if path.suffix == ".npy" else skio.imread(path)
    array = np.asarray(array).astype(np.int64)
    return list(array) if array.ndim == 3 else [array]


def folder_samples(images: Path, ground_truth: Path, limit: Optional[int]
                   ) -> list[tuple[str, Callable[[], BSDSImage]]]:
    """(stem, loader) for every image in ``images`` with a ground truth of the same
    stem in ``ground_truth`` (.mat, .npy, .png or .tif)."""
    truths = {path.stem: path for path in sorted(ground_truth.iterdir())
              if path.suffix in GT_SUFFIXES}
    pairs = [(path.stem, path) for path in sorted(images.iterdir())
             if path.suffix.lower() in IMAGE_SUFFIXES and path.stem in truths]
    if not pairs:
        raise ValueError(f"no image in {images} has a ground truth in {ground_truth}")

    def loader(path: Path, truth: Path) -> BSDSImage:
        return BSDSImage(rgb=skio.imread(path), segmentations=read_ground_truth(truth))
    return [(stem, lambda path=path, stem=stem: loader(path, truths[stem]))
            for stem, path in pairs[:limit]]


def evaluate_runs(runs, samples) -> list[dict]:
    """Rows of every (run, image, annotator); ``samples`` are (image id, loader) pairs."""
    rows = []
    progress = tqdm(total=len(runs) * len(samples), unit="map", file=sys.stderr,
                    disable=not sys.stderr.isatty())
    loaded = [(image_id, load()) for image_id, load in samples]
    # Run-major order: consecutive images reuse one run's nets (a deep net at 481x321
    # holds over a GB; a net per run and geometry cached at once ran out of memory).
    for name, requested, make_labels in runs:
        for image_id, sample in loaded:
            rgb = as_rgb(sample.rgb)
            labels = make_labels(image_id, rgb)
            if labels.shape != rgb.shape[:2]:
                raise ValueError(f"{name}: labels of {image_id} are {labels.shape}, the image "
                                 f"is {rgb.shape[:2]}")
            for row in evaluate(labels, sample.segmentations, rgb):
                rows.append(dict(method=name, requested=requested, image=image_id, **row))
            progress.update(1)
    progress.close()
    return rows


def summarise(rows: list[dict]) -> list[dict]:
    groups = defaultdict(list)
    for row in rows:
        groups[(row["method"], row["requested"])].append(row)
    summary = []
    for (method, requested), group in sorted(groups.items()):
        entry = dict(method=method, requested=requested, rows=len(group),
                     n_spixels=float(np.mean([r["n_spixels"] for r in group])))
        entry.update({m: float(np.mean([r[m] for r in group])) for m in METRICS})
        summary.append(entry)
    return summary


def write_csv(path: Path, rows: list[dict]) -> None:
    """Rows (dicts with the first row's keys) as CSV, atomically."""
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_curves(summary: list[dict], path: Path) -> None:
    """One panel per metric: the metric against the mean actual superpixel count."""
    methods = sorted({row["method"] for row in summary})
    with metric_panels(path, METRICS, columns=3) as panels:
        for axis, metric in panels:
            for method in methods:
                points = sorted((r["n_spixels"], r[metric]) for r in summary
                                if r["method"] == method)
                axis.plot(*zip(*points), marker="o", label=method)
            axis.set_xlabel("superpixels (mean actual count)")
        panels[0][0].legend()
