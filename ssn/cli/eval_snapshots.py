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
from ssn.evaluation.runs import bsds_samples, write_csv
from ssn.evaluation.snapshots import evaluate_snapshots, find_snapshots, plot_progress

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
                        help="snapshot .caffemodel files or directories holding them")
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
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """Score each snapshot on the split and plot the progress."""
    use_device(args.gpu)
    snapshots = find_snapshots(args.snapshots, args.every)
    if not snapshots:
        raise ValueError(f"no *_iter_*.caffemodel in {args.snapshots}")
    samples = bsds_samples(args.split, data_root(args.data_root), args.limit)
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
