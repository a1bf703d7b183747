"""The ``ssn-eval-snapshots`` command: its flags; the work and its description are in
:mod:`ssn.evaluation.snapshots`."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

import ssn.evaluation.snapshots as snapshots_module
from ssn.bsds import data_root
from ssn.cli import options
from ssn.cli.command import command_parser, run_command
from ssn.device import use_device
from ssn.evaluation import training_curve
from ssn.evaluation.baselines import BaselineMissing, baseline
from ssn.evaluation.runs import bsds_samples, write_csv
from ssn.evaluation.snapshots import (
    evaluate_snapshots,
    find_snapshots,
    plot_progress,
    snapshot_iteration,
)

log = logging.getLogger("ssn.cli.eval_snapshots")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-eval-snapshots",
        description=snapshots_module.__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  ssn-eval-snapshots models/bsds_cpu --out out/snapshots\n"
               "  ssn-eval-snapshots models/bsds_cpu/ssn_iter_2000.caffemodel "
               "--n-segments 100 400 --limit 50 --out out/snap2000\n")
    parser.add_argument("snapshots", type=Path, nargs="+",
                        help="snapshot .caffemodel files or directories holding them (with "
                             "--initial, a directory may be empty)")
    options.add_out(parser)
    options.add_count(parser, [200], many=True)
    options.add_limit(parser, 20)
    parser.add_argument("--every", type=int, default=1,
                        help="only snapshots whose iteration is a multiple of this "
                        "(the last one always)")
    options.add_split(parser)
    options.add_data_root(parser)
    options.add_steps(parser)
    options.add_gpu(parser)
    curve = parser.add_argument_group(
        "a training curve against fast-slic at matched actual counts (needs .[bench])")
    curve.add_argument("--curve", type=Path, metavar="CSV",
                       help="add the snapshots to this curve (CSV, and a PNG beside it) "
                            "instead of writing snapshots.csv; the peer's scores are kept "
                            "in --out/peer.json")
    curve.add_argument("--matched-counts", type=options.positive_int, nargs="+",
                       default=[200, 400, 1000], metavar="N",
                       help="actual counts of the curve (default: 200 400 1000)")
    curve.add_argument("--initial", type=Path, metavar="WEIGHTS",
                       help="the weights the run started from, scored as iteration 0")
    curve.add_argument("--batch-size", type=options.positive_int, default=6,
                       help="patches per training iteration (default: 6)")
    curve.add_argument("--patches-before", type=int, default=0, metavar="N",
                       help="patches the initial weights had seen (default: 0)")
    return parser


def add_to_curve(args: argparse.Namespace, snapshots: list[Path], samples) -> None:
    """Score ``snapshots`` (and --initial as iteration 0) against fast-slic's best
    compactness at the matched counts and merge them into the --curve file."""
    peer = training_curve.peer_scores(samples, args.matched_counts, args.out / "peer.json")
    scored = [(0, args.initial)] if args.initial else []
    scored += [(snapshot_iteration(path), path) for path in snapshots]
    rows = training_curve.read_curve(args.curve)
    for iteration, weights in scored:
        ssn = training_curve.snapshot_scores(weights, samples, args.matched_counts,
                                             args.num_steps)
        new = training_curve.curve_rows(
            iteration, args.patches_before + args.batch_size * iteration, ssn, peer)
        rows = training_curve.merge_curve(rows, new)
        training_curve.write_curve(args.curve, rows)
        for row in new:
            log.info("iter %-7d at %-5d ASA %.4f (fast-slic %.4f, lead %+.4f)  "
                     "BR %.4f (fast-slic %.4f, lead %+.4f)", iteration, row["actual"],
                     row["ssn_asa"], row["peer_asa"], row["asa_lead"],
                     row["ssn_boundary_recall"], row["peer_boundary_recall"],
                     row["recall_lead"])


def main(argv: Optional[list[str]] = None) -> int:
    return run_command(run, build_parser(), argv, input_errors=(BaselineMissing,))


def run(args: argparse.Namespace) -> int:
    """Score each snapshot on the split and plot the progress, or add them to --curve."""
    use_device(args.gpu)
    snapshots = find_snapshots(args.snapshots, args.every)
    if not snapshots and args.initial is None:
        raise ValueError(f"no *_iter_*.caffemodel in {args.snapshots}")
    if args.initial is not None and not args.initial.is_file():
        raise FileNotFoundError(f"--initial: no such file: {args.initial}")
    if args.curve is not None:
        baseline("fast-slic")
    samples = bsds_samples(args.split, data_root(args.data_root), args.limit)
    if args.curve is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        add_to_curve(args, snapshots, samples)
        log.info("wrote %s", args.curve)
        return 0
    summary = evaluate_snapshots(snapshots, samples, args.n_segments, args.num_steps)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "snapshots.csv", summary)
    plot_progress(summary, args.out / "snapshots.png")
    for entry in summary:
        log.info("%-12s n=%-5d actual %7.1f  ASA %.4f  BR %.4f  UE %.4f", entry["method"],
                 entry["requested"], entry["n_spixels"], entry["asa"],
                 entry["boundary_recall"], entry["undersegmentation_error"])
    log.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
