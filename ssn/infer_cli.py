"""Compute SSN superpixels for many images (used by tools/infer.py).

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
import sys
import time
from pathlib import Path
from typing import Iterable, Optional

import caffe
import numpy as np
from skimage import io as skio
from skimage import segmentation, util
from tqdm import tqdm

from ssn.inference import as_rgb, superpixels

log = logging.getLogger("ssn.infer")
IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm"}
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


def read_image(path: Path) -> np.ndarray:
    """An H x W x 3 float RGB image; ValueError with the reason when it cannot be read."""
    if not path.is_file():
        raise ValueError("file not found")
    try:
        image = skio.imread(path)
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad file
        raise ValueError(f"cannot read the image ({type(error).__name__}: {error})") from error
    return as_rgb(image)


def write_atomically(path: Path, write) -> None:
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    write(tmp)
    tmp.replace(path)


def write_results(out: Path, stem: str, rgb: np.ndarray, labels: np.ndarray) -> None:
    overlay = util.img_as_ubyte(segmentation.mark_boundaries(rgb, labels, (1, 1, 0)))
    write_atomically(out / f"{stem}_labels.png", lambda p: skio.imsave(
        p, labels.astype(np.uint16), check_contrast=False))
    write_atomically(out / f"{stem}_overlay.png", lambda p: skio.imsave(
        p, overlay, check_contrast=False))
    # The .npy last: its presence marks the image as done.
    write_atomically(out / f"{stem}.npy", lambda p: np.save(p, labels))


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

    write_atomically(out / "summary.csv", write_csv)
    write_atomically(out / "summary.json",
                     lambda p: p.write_text(json.dumps(ordered, indent=1)))


def process(path: Path, out: Path, args: argparse.Namespace) -> dict:
    start = time.perf_counter()
    rgb = read_image(path)
    labels = superpixels(rgb, args.n_spixels, args.num_steps, args.weights, args.connectivity,
                         args.features, args.min_size_factor, args.max_size_factor)
    seconds = time.perf_counter() - start
    write_results(out, path.stem, rgb, labels)
    return dict(image=str(path), height=rgb.shape[0], width=rgb.shape[1],
                requested=args.n_spixels, actual=int(labels.max()) + 1,
                seconds=f"{seconds:.3f}", status="ok")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python tools/infer.py ../shared/data/BSDS500/images/val --out out/val_100\n"
               "  python tools/infer.py 'photos/*.jpg' --n-spixels 400 --features pixel "
               "--out out/p400\n"
               "  python tools/infer.py list.txt --weights model.caffemodel --gpu 0 "
               "--out out/x\n")
    parser.add_argument("inputs", nargs="+",
                        help="image files, directories, glob patterns or .txt list files")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--n-spixels", type=int, default=100,
                        help="requested superpixels (default: 100)")
    parser.add_argument("--num-steps", type=int, default=10,
                        help="SLIC iterations (default: 10)")
    parser.add_argument("--weights", type=Path,
                        help="trained .caffemodel (default: the bundled model, if any)")
    parser.add_argument("--features", choices=["deep", "pixel"],
                        help="deep: learned features (needs weights); pixel: SSN_pix, "
                             "position and Lab only (default: deep if weights exist)")
    parser.add_argument("--gpu", type=int, default=-1, help="GPU id, -1 for CPU (default: -1)")
    parser.add_argument("--connectivity", action=argparse.BooleanOptionalAction, default=True,
                        help="enforce connected superpixels (default: on)")
    parser.add_argument("--min-size-factor", type=float, default=0.06,
                        help="merge segments below this x H*W/n pixels (default: 0.06)")
    parser.add_argument("--max-size-factor", type=float, default=3.0,
                        help="split segments above this x H*W/n pixels (default: 3.0)")
    parser.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                        help="recompute images whose results exist (default: skip them)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.gpu >= 0:
        caffe.set_device(args.gpu)
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()
    paths = expand_inputs(args.inputs)
    if not paths:
        log.error("no images found in %s", " ".join(args.inputs))
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    config = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}
    (args.out / "config.json").write_text(json.dumps(config, indent=1))
    rows = load_summary(args.out / "summary.csv")
    failures = 0
    for path in tqdm(paths, unit="image", file=sys.stderr, disable=not sys.stderr.isatty()):
        if not args.overwrite and (args.out / f"{path.stem}.npy").exists():
            continue
        try:
            rows[str(path)] = process(path, args.out, args)
        except (ValueError, OSError) as error:
            failures += 1
            log.error("%s: %s", path, error)
            rows[str(path)] = dict(image=str(path), status=f"failed: {error}")
        save_summary(args.out, rows)
    done = sum(row.get("status") == "ok" for row in rows.values())
    log.info("%d image(s) done, %d failed; results in %s", done, failures, args.out)
    return 1 if failures else 0
