"""Evaluate superpixels against BSDS500 ground truth, next to SLIC (used by tools/eval.py).

Protocol: every (image, annotator) pair is one row (ASA, boundary recall and
precision with tolerance round(0.0025 x diagonal), undersegmentation error,
compactness, explained variation; see ssn.metrics); a method's figure at one
requested count is the mean over rows, plotted against the mean actual number
of superpixels. Methods: label maps in directories (tools/infer.py output,
<stem>.npy), SSN run here (--ssn COUNTS), scikit-image SLIC (--slic COUNTS).
Any folder of images with ground truths (--images, --gt) works as well as a
BSDS500 split. Writes rows.csv, summary.csv, summary.json and curves.png to --out.
"""
from __future__ import annotations

import argparse
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
from skimage import segmentation
from tqdm import tqdm

from ssn.data import BSDSImage, data_root, load_bsds, read_split
from ssn.infer_cli import IMAGE_SUFFIXES
from ssn.inference import as_rgb, superpixels
from ssn.metrics import evaluate

log = logging.getLogger("ssn.evaluate")
METRICS = ("asa", "boundary_recall", "boundary_precision", "undersegmentation_error",
           "compactness", "explained_variation")
SLIC_COMPACTNESS = 10.0
GT_SUFFIXES = {".mat", ".npy", ".png", ".tif", ".tiff"}


def slic_labels(rgb: np.ndarray, n_segments: int) -> np.ndarray:
    """scikit-image SLIC (compactness 10, connectivity enforced), labels from 0."""
    return segmentation.slic(rgb, n_segments=n_segments, compactness=SLIC_COMPACTNESS,
                             start_label=0, channel_axis=-1)


def methods_from_args(args: argparse.Namespace) -> list[tuple[str, int, Callable]]:
    """(method name, requested count, function(stem, rgb) -> labels) for every run."""
    runs = []
    for spec in args.method or []:
        name, _, folder = spec.partition("=")
        if not folder:
            raise ValueError(f"--method wants NAME=DIR, got {spec!r}")
        requested = json.loads((Path(folder) / "config.json").read_text()).get(
            "n_spixels", 0) if (Path(folder) / "config.json").exists() else 0

        def from_folder(stem, rgb, folder=Path(folder)):
            return np.load(folder / f"{stem}.npy")
        runs.append((name, requested, from_folder))
    for features in args.features or [None]:
        for count in args.ssn or []:
            runs.append((f"SSN-{features or 'auto'}", count,
                         lambda stem, rgb, count=count, features=features: superpixels(
                             rgb, count, args.num_steps, args.weights, True, features)))
    for count in args.slic or []:
        runs.append(("SLIC", count, lambda stem, rgb, count=count: slic_labels(rgb, count)))
    if not runs:
        raise ValueError("nothing to evaluate: give --method, --ssn or --slic")
    return runs


def bsds_samples(split: str, root: Optional[Path], limit: Optional[int]
                 ) -> list[tuple[str, Callable[[], BSDSImage]]]:
    """(image id, loader) for a BSDS500 split."""
    return [(image_id, lambda image_id=image_id: load_bsds(image_id, split, root))
            for image_id in read_split(split)[:limit]]


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
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def plot_curves(summary: list[dict], path: Path) -> None:
    """One panel per metric: the metric against the mean actual superpixel count."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(2, 3, figsize=(13, 7.5))
    methods = sorted({row["method"] for row in summary})
    for axis, metric in zip(axes.flat, METRICS):
        for method in methods:
            points = sorted((r["n_spixels"], r[metric]) for r in summary
                            if r["method"] == method)
            axis.plot(*zip(*points), marker="o", label=method)
        axis.set_xlabel("superpixels (mean actual count)")
        axis.set_title(metric.replace("_", " "))
        axis.grid(alpha=0.3)
    axes.flat[0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python tools/eval.py --ssn 100 200 400 --slic 100 200 400 --out out/eval\n"
               "  python tools/eval.py --ssn 200 --features deep pixel --out out/deep_pix\n"
               "  python tools/infer.py ../shared/data/BSDS500/images/val --out out/ssn100\n"
               "  python tools/eval.py --method SSN=out/ssn100 --slic 100 --out out/eval100\n")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--split", default="val", help="BSDS500 split (default: val)")
    parser.add_argument("--data-root", type=Path, help="BSDS500 directory (default: "
                        "$SSN_DATA_ROOT or ../shared/data/BSDS500)")
    parser.add_argument("--images", type=Path,
                        help="evaluate these images instead of a BSDS500 split (with --gt)")
    parser.add_argument("--gt", type=Path, help="ground truths for --images: <stem>.mat "
                        "(BSDS), .npy (H x W or A x H x W) or .png label maps")
    parser.add_argument("--limit", type=int, help="evaluate only the first N images")
    parser.add_argument("--method", action="append",
                        help="NAME=DIR of <image id>.npy label maps (repeatable)")
    parser.add_argument("--ssn", type=int, nargs="+", metavar="N",
                        help="run SSN here at these requested counts")
    parser.add_argument("--slic", type=int, nargs="+", metavar="N",
                        help="run scikit-image SLIC at these requested counts")
    parser.add_argument("--features", choices=["deep", "pixel"], nargs="+",
                        help="SSN features for --ssn, one run of each (default: deep if a "
                        "model exists, else pixel)")
    parser.add_argument("--weights", type=Path, help="SSN .caffemodel for --ssn")
    parser.add_argument("--num-steps", type=int, default=10,
                        help="SLIC iterations for --ssn (default: 10)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        runs = methods_from_args(args)
    except ValueError as error:
        log.error("%s", error)
        return 2
    if (args.images is None) != (args.gt is None):
        log.error("--images and --gt go together")
        return 2
    try:
        samples = (folder_samples(args.images, args.gt, args.limit) if args.images
                   else bsds_samples(args.split, data_root(args.data_root), args.limit))
    except (ValueError, OSError) as error:
        log.error("%s", error)
        return 2
    rows = evaluate_runs(runs, samples)
    args.out.mkdir(parents=True, exist_ok=True)
    summary = summarise(rows)
    write_csv(args.out / "rows.csv", rows)
    write_csv(args.out / "summary.csv", summary)
    (args.out / "summary.json").write_text(json.dumps(summary, indent=1))
    plot_curves(summary, args.out / "curves.png")
    for entry in summary:
        log.info("%-14s n=%-5d actual %7.1f  ASA %.4f  BR %.4f  BP %.4f  UE %.4f  CO %.4f  "
                 "EV %.4f", entry["method"], entry["requested"], entry["n_spixels"],
                 *(entry[m] for m in METRICS))
    log.info("wrote %s", args.out)
    return 0

