"""Make a synthetic optical-flow data set from a BSDS500 split.

Each segment of an image's coarsest human segmentation moves by its own random
affine motion (rotation and scale about its centroid, then a translation), so
the flow has real motion boundaries inside a real image (see ssn.examples.synthflow).
Writes images/<id>.jpg, targets/<id>.flo, segments/<id>.png and config.json
under --out: a data set for `ssn-train --dataset OUT --target continuous` and
`ssn-eval-continuous --dataset OUT`. Deterministic for a --seed; a rerun
finishes an interrupted one.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

from ssn.bsds import read_split
from ssn.cli import options
from ssn.cli.command import command_parser, run_command
from ssn.examples.synthflow import DEFAULT_SEED, MotionRange, write_split

log = logging.getLogger("ssn.cli.synthflow")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-synthflow",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  ssn-synthflow --split train --out out/synthflow/train\n"
               "  ssn-synthflow --split val --out out/synthflow/val --limit 50\n"
               "  ssn-synthflow --split train --out /tmp/fast --max-translation 16 "
               "--seed 7\n")
    options.add_split(parser, "train", ("train", "val"), help="BSDS500 split to read")
    options.add_out(parser, help="data set folder to write")
    options.add_data_root(parser)
    options.add_limit(parser)
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED,
                        help=f"motion seed (default: {DEFAULT_SEED})")
    defaults = MotionRange()
    parser.add_argument("--max-translation", type=float, default=defaults.max_translation,
                        help="largest translation per axis, pixels (default: %(default)s)")
    parser.add_argument("--max-rotation", type=float, default=defaults.max_rotation,
                        help="largest rotation, degrees (default: %(default)s)")
    parser.add_argument("--max-scale", type=float, default=defaults.max_scale,
                        help="largest relative scale change (default: %(default)s)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """Write the split's synthetic flow pairs."""
    ranges = MotionRange(args.max_translation, args.max_rotation, args.max_scale)
    ids = None
    if args.limit:
        ids = read_split(args.split, args.data_root)[:args.limit]
    written = write_split(args.split, args.out, args.data_root, args.seed, ranges, ids)
    log.info("wrote %d pairs to %s", len(written), Path(args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
