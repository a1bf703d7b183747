"""The ``ssn-eval`` command: its flags; the work and its description are in
:mod:`ssn.evaluation.runs`."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

import ssn.evaluation.runs as runs_module
from ssn.atomic import ensure_writable_folder
from ssn.bsds import data_root
from ssn.cli import options
from ssn.cli.command import UsageError, command_parser, run_command
from ssn.device import use_device
from ssn.evaluation.baselines import LABELLERS
from ssn.evaluation.matched import MATCHED_COUNTS
from ssn.evaluation.runs import (
    METRICS,
    baseline_runs,
    bsds_samples,
    exit_status,
    folder_run,
    folder_samples,
    score_into,
    ssn_run,
    write_results,
)

log = logging.getLogger("ssn.cli.eval")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-eval",
        description=runs_module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  ssn-eval --n-segments 100 200 400 --out out/eval\n"
               "  ssn-eval --n-segments 200 --methods ssn --features deep pixel "
               "--out out/deep_pix\n"
               "  ssn-infer data/BSDS500/images/val --out out/ssn100\n"
               "  ssn-eval --labels SSN=out/ssn100 --n-segments 100 --methods slic "
               "--out out/eval100\n")
    options.add_out(parser)
    options.add_split(parser)
    options.add_data_root(parser)
    parser.add_argument("--images", type=Path,
                        help="evaluate these images instead of a BSDS500 split (with --gt)")
    parser.add_argument("--gt", type=Path, help="ground truths for --images: <stem>.mat "
                        "(BSDS), .npy (H x W or A x H x W) or .png label maps")
    options.add_limit(parser, what="images")
    parser.add_argument("--labels", "--method", dest="labels", action="append",
                        metavar="NAME=DIR",
                        help="label maps computed earlier, DIR/<image id>.npy (repeatable)")
    options.add_count(parser, None, many=True,
                      help="compute --methods here at these requested counts")
    parser.add_argument("--methods", nargs="+", choices=["ssn", *LABELLERS],
                        default=["ssn", "slic"],
                        help="what --n-segments runs (default: ssn slic); fast-slic and "
                             "opencv-* need pip install .[bench] and are skipped, with a "
                             "message, without it")
    options.add_compactness(parser)
    parser.add_argument("--matched-counts", type=int, nargs="+",
                        default=list(MATCHED_COUNTS), metavar="N",
                        help="actual counts at which methods are compared, interpolated in "
                             f"log count (default: {' '.join(map(str, MATCHED_COUNTS))})")
    options.add_features(parser, nargs="+", help="SSN features, one run of each "
                         "(default: deep if a model exists, else pixel)")
    parser.add_argument("--weights", type=Path, help="SSN .caffemodel (default: the bundled)")
    options.add_steps(parser, None)
    options.add_grid(parser)
    options.add_position_weight(parser)
    options.add_gpu(parser)
    return parser


def runs_from_args(args: argparse.Namespace) -> list:
    """Every (method, requested count, labeller) the flags ask for."""
    runs, missing = [], set()
    compactness = options.compactness_values(args.compactness)
    for spec in args.labels or []:
        name, _, folder = spec.partition("=")
        if not folder:
            raise ValueError(f"--labels wants NAME=DIR, got {spec!r}")
        runs.append(folder_run(name, Path(folder)))
    for count in args.n_segments or []:
        if "ssn" in args.methods:
            runs += [ssn_run(count, features, args.num_steps, args.weights, args.grid,
                             args.position_weight)
                     for features in args.features or [None]]
        runs += baseline_runs(args.methods, count, compactness, missing)
    if not runs:
        raise ValueError("nothing to evaluate: give --labels or --n-segments")
    # A method's rows are grouped by (name, count): two runs of one name would merge.
    folders = [spec.partition("=")[0] for spec in args.labels or []]
    computed = {run[0] for run in runs[len(folders):]}
    twice = sorted({name for name in folders if folders.count(name) > 1 or name in computed})
    if twice:
        raise ValueError(f"method name(s) {', '.join(twice)} given twice (--labels, or a "
                         "--labels name equal to a computed method's): their rows would "
                         "merge; give each --labels its own NAME")
    return runs


def main(argv: Optional[list[str]] = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """Score the runs on the samples; 1 when nothing could be scored."""
    use_device(args.gpu)
    runs = runs_from_args(args)
    if (args.images is None) != (args.gt is None):
        raise UsageError("--images and --gt go together")
    ensure_writable_folder(args.out, "output folder (--out)")
    samples = (folder_samples(args.images, args.gt, args.limit) if args.images
               else bsds_samples(args.split, data_root(args.data_root), args.limit))
    rows, skipped = score_into(args.out, runs, samples)
    if not rows:
        return 1
    summary, matched = write_results(rows, args.out, args.matched_counts)
    for entry in summary:
        log.info("%-14s n=%-5d actual %7.1f  ASA %.4f  BR %.4f  BP %.4f  UE %.4f  CO %.4f  "
                 "EV %.4f", entry["method"], entry["requested"], entry["n_spixels"],
                 *(entry[m] for m in METRICS))
    log.info("ASA / boundary recall at matched actual counts (matched.csv):\n%s",
             (args.out / "matched.md").read_text())
    log.info("wrote %s", args.out)
    return exit_status(skipped, args.out)


if __name__ == "__main__":
    sys.exit(main())
