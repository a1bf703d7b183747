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

import argparse
import json
import logging
from pathlib import Path
from typing import Optional

from ssn.bsds import data_root
from ssn.evaluation.runs import (
    METRICS,
    bsds_samples,
    evaluate_runs,
    folder_samples,
    methods_from_args,
    plot_curves,
    summarise,
    write_csv,
)

log = logging.getLogger("ssn.cli.eval")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python tools/eval.py --ssn 100 200 400 --slic 100 200 400 --out out/eval\n"
               "  python tools/eval.py --ssn 200 --features deep pixel --out out/deep_pix\n"
               "  python tools/infer.py data/BSDS500/images/val --out out/ssn100\n"
               "  python tools/eval.py --method SSN=out/ssn100 --slic 100 --out out/eval100\n")
    parser.add_argument("--out", type=Path, required=True, help="output directory")
    parser.add_argument("--split", default="val", help="BSDS500 split (default: val)")
    parser.add_argument("--data-root", type=Path, help="BSDS500 directory (default: "
                        "$SSN_DATA_ROOT or ./data/BSDS500)")
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

