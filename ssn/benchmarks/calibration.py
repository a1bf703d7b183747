"""Does ``superpixels(n_segments=n)`` give about n superpixels? Actual over requested
counts against the position weight and the image size, and the fit that makes it so.

It runs :func:`ssn.inference.superpixels` (calibrated grid, connectivity on, the
model's steps) on BSDS500 val images at their own size (0.15 MP) and resized
(bilinear) to other sizes, at each requested count and position weight, and
records per image the grid and the final count. The table gives, per size,
count and position weight, the mean actual/requested over the images (and the
range of single images). ``--fit`` fits a :class:`ssn.calibration.Calibration`
(superpixels per grid cell against cells, position weight and size) to the
rows, ``--write-metadata`` writes it into a model's metadata file. A benchmark
of the counts, not a timed test: the 24 MP deep runs take a minute each on 2 cores.
"""
from __future__ import annotations

import csv
import logging
import math
import statistics
import time
from collections import defaultdict
from pathlib import Path
from typing import Iterable, Optional, Sequence

import numpy as np
from PIL import Image

from ssn.bsds import load_bsds, read_split
from ssn.calibration import Calibration, fit
from ssn.grid import grid_request, grid_shape
from ssn.inference import model_defaults, resolve_features, superpixels
from ssn.model_metadata import model_settings

log = logging.getLogger("ssn.benchmarks.calibration")

NATIVE = 0.0  # "megapixels" of a BSDS500 image at its own size (481 x 321, 0.154 MP)
SIZES = (0.1, NATIVE, 0.5, 2.0, 12.0, 24.0)
COUNTS = (200, 400, 1000)
POSITION_WEIGHTS = (0.5, 1.0, 2.0, 4.0)
ROW_FIELDS = ("features", "image", "megapixels", "height", "width", "position_weight",
              "requested", "grid_count", "cells", "actual", "seconds")


def resized(rgb: np.ndarray, megapixels: float) -> np.ndarray:
    """The image scaled (bilinear, aspect kept) to about ``megapixels``; as is for NATIVE."""
    if megapixels == NATIVE:
        return rgb
    height, width = rgb.shape[:2]
    scale = math.sqrt(megapixels * 1e6 / (height * width))
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR))


def measure(image_ids: Sequence[str], sizes: Sequence[float], counts: Sequence[int],
            position_weights: Sequence[float], features: Optional[str] = None,
            weights: Optional[str] = None, big_images: int = 2, big_from: float = 10.0,
            root: Optional[Path] = None) -> Iterable[dict]:
    """One row per (size, image, position weight, count), as it is measured.

    Sizes of ``big_from`` megapixels and more use only the first ``big_images`` images.
    """
    mode, weights_path = resolve_features(features, weights)
    model = model_settings(weights_path)
    for megapixels in sizes:
        ids = image_ids[:big_images] if megapixels >= big_from else image_ids
        for image_id in ids:
            rgb = resized(load_bsds(image_id, "val", root).rgb, megapixels)
            height, width = rgb.shape[:2]
            for weight in position_weights:
                _, weight = model_defaults(model, None, weight)
                for count in counts:
                    start = time.perf_counter()
                    labels = superpixels(rgb, count, weights=weights_path, features=mode,
                                         position_weight=weight)
                    grid_count = grid_request(count, height, width, model.calibration,
                                              position_weight=weight)
                    yield dict(features=mode, image=image_id, megapixels=megapixels,
                               height=height, width=width, position_weight=weight,
                               requested=count, grid_count=grid_count,
                               cells=math.prod(grid_shape(grid_count, height, width)),
                               actual=int(labels.max()) + 1,
                               seconds=round(time.perf_counter() - start, 2))


def read_rows(paths: Iterable[Path]) -> list[dict]:
    """Rows written by :func:`write_rows`, numbers parsed."""
    rows = []
    for path in paths:
        with open(path, newline="") as stream:
            for row in csv.DictReader(stream):
                rows.append(dict(row, **{key: float(row[key]) for key in (
                    "megapixels", "position_weight", "seconds")}, **{key: int(row[key]) for key in (
                        "height", "width", "requested", "grid_count", "cells", "actual")}))
    return rows


def write_rows(rows: Sequence[dict], path: Path) -> None:
    with open(path, "w", newline="") as stream:
        writer = csv.DictWriter(stream, ROW_FIELDS, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def size_label(megapixels: float) -> str:
    return "0.15 (BSDS)" if megapixels == NATIVE else f"{megapixels:g}"


def summary(rows: Sequence[dict]) -> list[dict]:
    """Per (size, requested, position weight): images, mean pixels, mean actual/requested
    and its range over the images."""
    groups = defaultdict(list)
    for row in rows:
        groups[(row["megapixels"], row["requested"], row["position_weight"])].append(row)
    table = []
    for (megapixels, requested, weight), members in sorted(groups.items()):
        ratios = [row["actual"] / requested for row in members]
        table.append(dict(megapixels=megapixels, requested=requested, position_weight=weight,
                          images=len(members),
                          pixels=statistics.mean(row["height"] * row["width"] for row in members),
                          ratio=statistics.mean(ratios), low=min(ratios), high=max(ratios)))
    return table


def write_summary(table: Sequence[dict], path: Path) -> None:
    fields = ("megapixels", "requested", "position_weight", "images", "pixels", "ratio", "low",
              "high")
    with open(path, "w", newline="") as stream:
        writer = csv.writer(stream)
        writer.writerow(fields)
        for entry in table:
            writer.writerow([entry["megapixels"], entry["requested"], entry["position_weight"],
                             entry["images"], round(entry["pixels"]),
                             *(f"{entry[key]:.3f}" for key in ("ratio", "low", "high"))])


def markdown(table: Sequence[dict]) -> str:
    """Mean actual/requested per size and count (rows) and position weight (columns),
    with the images' range."""
    weights = sorted({entry["position_weight"] for entry in table})
    cells = {(e["megapixels"], e["requested"], e["position_weight"]): e for e in table}
    lines = ["| MP | images | requested | " + " | ".join(f"pw {w:g}" for w in weights) + " |",
             "|---|---|---|" + "---|" * len(weights)]
    for megapixels, requested in sorted({key[:2] for key in cells}):
        entries = [cells.get((megapixels, requested, w)) for w in weights]
        images = max(e["images"] for e in entries if e)
        lines.append(f"| {size_label(megapixels)} | {images} | {requested} | " + " | ".join(
            f"**{e['ratio']:.2f}** ({e['low']:.2f}-{e['high']:.2f})" if e else "-"
            for e in entries) + " |")
    return "\n".join(lines)


def paired(rows: Sequence[dict]) -> list[dict]:
    """Per resized (size, requested, position weight): the mean actual/requested over
    its images divided by the same images' mean at BSDS500's own size (same weight
    and count): the size's own effect, without the chosen images' (a size measured
    on 2 images mostly shows whether those 2 split more or less than the average)."""
    native = {(row["image"], row["position_weight"], row["requested"]): row["actual"]
              for row in rows if row["megapixels"] == NATIVE}
    groups = defaultdict(list)
    for row in rows:
        key = (row["image"], row["position_weight"], row["requested"])
        if row["megapixels"] != NATIVE and key in native:
            groups[(row["megapixels"], row["requested"], row["position_weight"])].append(
                (row["actual"], native[key]))
    return [dict(megapixels=megapixels, requested=requested, position_weight=weight,
                 images=len(pairs), ratio=sum(a for a, _ in pairs) / sum(b for _, b in pairs))
            for (megapixels, requested, weight), pairs in sorted(groups.items())]


def paired_markdown(table: Sequence[dict]) -> str:
    """:func:`paired` as a table like :func:`markdown`'s."""
    weights = sorted({entry["position_weight"] for entry in table})
    cells = {(e["megapixels"], e["requested"], e["position_weight"]): e for e in table}
    lines = ["| MP | images | requested | " + " | ".join(f"pw {w:g}" for w in weights) + " |",
             "|---|---|---|" + "---|" * len(weights)]
    for megapixels, requested in sorted({key[:2] for key in cells}):
        entries = [cells.get((megapixels, requested, w)) for w in weights]
        images = max(e["images"] for e in entries if e)
        lines.append(f"| {size_label(megapixels)} | {images} | {requested} | " + " | ".join(
            f"{e['ratio']:.2f}" if e else "-" for e in entries) + " |")
    return "\n".join(lines)


def worst(table: Sequence[dict]) -> float:
    """The largest |mean actual/requested - 1| in the table."""
    return max(abs(entry["ratio"] - 1) for entry in table)


def fit_rows(rows: Sequence[dict], measured: str = "",
             size_from: Optional[Calibration] = None) -> Calibration:
    """A calibration fitted to the rows: each image's superpixels per cell against
    the cells, the position weight and the size, with an offset per image
    (:func:`ssn.calibration.fit`); with ``size_from``, its size terms."""
    return fit([row["cells"] for row in rows], [row["position_weight"] for row in rows],
               [row["height"] * row["width"] / 1e6 for row in rows],
               [row["actual"] / row["cells"] for row in rows],
               images=[row["image"] for row in rows], measured=measured,
               size_from=size_from)


def fit_quality(calibration: Calibration, rows: Sequence[dict]) -> float:
    """The largest relative error of the calibration's expected count against the mean
    measured count, over the (size, requested, position weight) groups of ``rows``."""
    groups = defaultdict(list)
    for row in rows:
        groups[(row["megapixels"], row["requested"], row["position_weight"])].append(row)
    errors = []
    for (_, _, weight), members in groups.items():
        expected = statistics.mean(row["cells"] * calibration.per_cell(
            row["cells"], weight, row["height"] * row["width"] / 1e6) for row in members)
        errors.append(abs(expected / statistics.mean(row["actual"] for row in members) - 1))
    return max(errors)


def val_images(count: int, root: Optional[Path] = None) -> list[str]:
    """The first ``count`` images of the BSDS500 val split."""
    return read_split("val", root)[:count]
