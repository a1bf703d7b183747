"""Turn a data set of continuous targets into one of region labels.

Each target (optical flow, depth, any real map) is cut into the connected
regions of 4-neighbours whose values differ by at most --threshold (in the
target's units: pixels for flow); regions are numbered by decreasing area.
Writes <out>/regions/<stem>.png (16-bit labels) and <out>/pairs.txt, a list of
(image, regions) pairs for `ssn-train --dataset OUT/pairs.txt --target
labels`: the label loss then teaches superpixels the target's discontinuities
(see docs/TASKS.md). A pair that cannot be read is reported and skipped; the
others are still written.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Optional

import numpy as np
from skimage import io as skio
from tqdm import tqdm

from ssn.atomic import atomic_path
from ssn.cli import options
from ssn.cli.command import UsageError, command_parser, run_command
from ssn.training.pairs import load_pair, open_pairs
from ssn.training.regions import target_regions

log = logging.getLogger("ssn.cli.target_regions")

LARGEST_KEPT = 50  # the label loss keeps the 50 smallest ids of a patch
MAX_LABEL = np.iinfo(np.uint16).max


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-target-regions",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  ssn-target-regions --dataset out/synthflow/train --threshold 0.5 "
               "--out out/synthflow/train_regions\n"
               "  ssn-train --dataset out/synthflow/train_regions/pairs.txt --target labels "
               "--out runs/flow_regions --weights ssn/models/ssn_bsds.caffemodel\n")
    parser.add_argument("--dataset", type=Path, required=True,
                        help="folder (images/, targets/) or list file of continuous pairs")
    parser.add_argument("--threshold", type=float, required=True,
                        help="largest step between neighbouring pixels inside a region, in "
                             "the target's units (for flow in pixels, e.g. 0.5)")
    options.add_out(parser, help="folder for regions/ and pairs.txt")
    return parser


def write_regions(pair, threshold: float, out: Path) -> tuple[Path, float, int]:
    """Write one pair's regions; return (their file, the share of pixels in the
    LARGEST_KEPT largest regions, the region count)."""
    image = load_pair(pair, "continuous")
    regions = target_regions(image.segmentations[0], threshold)
    count = int(regions.max())
    if count > MAX_LABEL:
        raise ValueError(f"{pair.target}: {count} regions at threshold {threshold}, more than "
                         f"a 16-bit PNG holds: the target varies faster than the threshold "
                         "between neighbours; raise it")
    path = out / "regions" / f"{pair.stem}.png"
    with atomic_path(path) as tmp:
        skio.imsave(tmp, regions.astype(np.uint16), check_contrast=False)
    if not np.array_equal(skio.imread(path), regions):
        raise OSError(f"{path} does not read back as written")
    covered = float(np.mean(regions <= LARGEST_KEPT))
    return path, covered, count


def main(argv: Optional[list[str]] = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """Write each pair's regions and their list; 1 when some pairs failed."""
    if not args.threshold > 0:
        raise UsageError(f"--threshold must be > 0, got {args.threshold}")
    pairs = open_pairs(args.dataset, "continuous")
    (args.out / "regions").mkdir(parents=True, exist_ok=True)
    lines, covered, counts, failed = [], [], [], []
    for pair in tqdm(pairs, unit="pair", file=sys.stderr, disable=not sys.stderr.isatty()):
        try:
            path, share, count = write_regions(pair, args.threshold, args.out)
        except (ValueError, OSError) as error:
            log.warning("skipped %s: %s", pair.target, error)
            failed.append(pair)
            continue
        image = os.path.relpath(pair.image.resolve(), args.out.resolve())
        lines.append(f"{image} {path.relative_to(args.out)}")
        covered.append(share)
        counts.append(count)
    if lines:
        with atomic_path(args.out / "pairs.txt") as tmp:
            tmp.write_text("\n".join(lines) + "\n")
        log.info("wrote %d pairs to %s: %.1f regions per target (median %d); the %d largest "
                 "cover %.1f%% of the pixels on average", len(lines), args.out / "pairs.txt",
                 np.mean(counts), np.median(counts), LARGEST_KEPT, 100 * np.mean(covered))
    if failed:
        log.error("%d of %d pairs not converted (listed above)", len(failed), len(pairs))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
