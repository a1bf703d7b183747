"""Compute SSN superpixels for many images (the work behind ``ssn-infer`` / tools/infer.py).

Inputs are image files, directories, glob patterns or list files (.txt, one
path per line). For each image it writes, next to nothing else in --out:
<stem>.npy (int32 H x W labels 0..K-1), <stem>_labels.png (16-bit labels) and
<stem>_overlay.png (boundaries on the image); plus summary.csv / summary.json
(image, size, requested and actual count, seconds) and config.json. Images
already done are skipped unless --overwrite. A bad file is reported and
skipped; the exit code is 1 if any image failed.
"""
from __future__ import annotations

import argparse
import csv
import glob
import json
import logging
import time
from pathlib import Path
from typing import Iterable

import numpy as np

from ssn.atomic import atomic_path, write_atomic
from ssn.images import IMAGE_SUFFIXES, overlay, read_image, save_npy, save_png
from ssn.inference import superpixels

log = logging.getLogger("ssn.infer")
SUMMARY_FIELDS = ["image", "height", "width", "requested", "actual", "seconds", "status"]


def expand_inputs(inputs: Iterable[str]) -> list[Path]:
    """Image paths from files, directories, globs and .txt list files, in order, once each."""
    paths: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            paths += sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.suffix.lower() == ".txt" and path.is_file():
            base = path.parent
            for line in path.read_text().splitlines():
                if line.strip():
                    entry = Path(line.strip())
                    paths.append(entry if entry.is_absolute() else base / entry)
        elif any(ch in item for ch in "*?["):
            paths += sorted(Path(p) for p in glob.glob(item, recursive=True))
        else:
            paths.append(path)
    seen, unique = set(), []
    for path in paths:
        if path not in seen:
            seen.add(path)
            unique.append(path)
    return unique


def write_results(out: Path, stem: str, rgb: np.ndarray, labels: np.ndarray) -> None:
    """<stem>_labels.png (16-bit), <stem>_overlay.png and, last, <stem>.npy, each atomically.

    The .npy's presence marks the image as done.
    """
    save_png(out / f"{stem}_labels.png", labels.astype(np.uint16))
    save_png(out / f"{stem}_overlay.png", overlay(rgb, labels))
    save_npy(out / f"{stem}.npy", labels)


def load_summary(path: Path) -> dict[str, dict]:
    if not path.exists():
        return {}
    with open(path, newline="") as stream:
        return {row["image"]: row for row in csv.DictReader(stream)}


def save_summary(out: Path, rows: dict[str, dict]) -> None:
    ordered = [rows[key] for key in sorted(rows)]

    def write_csv(path: Path) -> None:
        with open(path, "w", newline="") as stream:
            writer = csv.DictWriter(stream, fieldnames=SUMMARY_FIELDS)
            writer.writeheader()
            writer.writerows(ordered)

    with atomic_path(out / "summary.csv") as tmp:
        write_csv(tmp)
    write_atomic(out / "summary.json", json.dumps(ordered, indent=1))


def process(path: Path, out: Path, args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    rgb = read_image(path)
    labels = superpixels(rgb, args.n_segments, args.num_steps, args.weights,
                         enforce_connectivity=args.connectivity, features=args.features,
                         min_size_factor=args.min_size_factor,
                         max_size_factor=args.max_size_factor,
                         fused=args.fused)
    seconds = time.perf_counter() - start
    write_results(out, path.stem, rgb, labels)
    return dict(image=str(path), height=rgb.shape[0], width=rgb.shape[1],
                requested=args.n_segments, actual=int(labels.max()) + 1,
                seconds=f"{seconds:.3f}", status="ok")
