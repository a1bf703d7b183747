"""Train an SSN with pycaffe: from a solver prototxt, or on any data set of image + target pairs.

With --dataset (a folder with images/ and targets/, or a list file of 'IMAGE
TARGET' lines) every pair is checked first, then the run's prototxt files are
written to --out and training starts there: --target labels reconstructs the
label maps through the superpixels (the BSDS500 loss), --target continuous
reconstructs a continuous map (.flo flow, .npy, 16-bit PNG) with an L2 loss;
both with the compactness term and the random scale, flip and crop of the
original. See docs/TASKS.md.

Snapshots come from the solver's ``snapshot`` setting, with one more at the end,
and one when training stops on Ctrl-C, SIGTERM or an error. Each is written under
a temporary name and renamed. --resume checks the snapshot first and continues
the data sequence where the snapshot left it. Each iteration's losses go to a CSV
log. Exit status: 0 done or interrupted, 2 a bad argument, file or snapshot, 1
another error (after its snapshot).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from ssn.cli import options
from ssn.cli.command import UsageError, command_parser, run_command
from ssn.nets.generators import CONTINUOUS_LOSSES
from ssn.nets.prototxt import PROTOTXT_DIR, SOLVER
from ssn.training.pairs import TARGET_KINDS
from ssn.training.solver import train
from ssn.training.task_run import TASK_RECIPE, prepare_run

log = logging.getLogger("ssn.cli.train")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-train",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  ssn-train                      # prototxt/ssn_solver.prototxt, CPU\n"
               "  ssn-train --max-iter 2000 --snapshot-prefix models/run1/ssn\n"
               "  ssn-train --resume models/run1/ssn_iter_1000.solverstate\n"
               "  ssn-train --weights models/ssn_init.caffemodel --gpu 0\n"
               "  ssn-train --dataset my_data --target labels --out runs/mine\n"
               "  ssn-train --dataset out/synthflow/train --target continuous --out runs/flow \\\n"
               "      --weights ssn/models/ssn_bsds.caffemodel --max-iter 2000\n"
               "  ssn-train --dataset out/synthflow/train --target continuous --out runs/flow \\\n"
               "      --resume runs/flow/ssn_iter_500.solverstate\n")
    parser.add_argument("--solver", type=Path,
                        help="solver prototxt (default: prototxt/ssn_solver.prototxt; not "
                             "with --dataset, which writes its own)")
    options.add_gpu(parser)
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--weights", type=Path, help="initial .caffemodel (by layer name)")
    start.add_argument("--resume", type=Path, help=".solverstate to continue from")
    parser.add_argument("--max-iter", type=int, help="override the solver's max_iter")
    parser.add_argument("--snapshot-prefix", help="override the solver's snapshot_prefix")
    parser.add_argument("--log-csv", type=Path,
                        help="loss log (default: <snapshot_prefix>_loss.csv; --resume appends to "
                             "it, a fresh run moves it aside to <stem>.<time>.csv)")
    add_dataset_options(parser.add_argument_group(
        "training on a data set of pairs (writes the prototxt files to --out)"))
    return parser


def add_dataset_options(group) -> None:
    """--dataset, --target, --out and the recipe flags of a run on pairs."""
    recipe = TASK_RECIPE
    group.add_argument("--dataset", type=Path,
                       help="folder with images/ and targets/, or a list file of pairs")
    group.add_argument("--val-dataset", type=Path,
                       help="pairs for the solver's tests (default: no tests)")
    group.add_argument("--target", choices=TARGET_KINDS, default="labels",
                       help="labels: integer label maps; continuous: any real-valued map "
                            "(default: labels)")
    group.add_argument("--flow", action=argparse.BooleanOptionalAction,
                       help="the continuous target is optical flow (u, v): its vectors "
                            "scale and flip with the image (default: when all are .flo)")
    group.add_argument("--out", type=Path,
                       help="run folder: prototxt files, snapshots <out>/ssn_iter_N, log")
    options.add_count(group, recipe.n_spixels, help="superpixels per training patch")
    group.add_argument("--patch", type=options.positive_int, default=recipe.patch,
                       help="square training patch side (default: %(default)s)")
    group.add_argument("--batch-size", type=options.positive_int, default=recipe.batch_size,
                       help="patches per iteration (default: %(default)s)")
    options.add_steps(group, recipe.num_steps)
    group.add_argument("--base-lr", type=float, default=recipe.base_lr,
                       help="Adam's learning rate (default: %(default)s)")
    group.add_argument("--lr-step", type=int, default=recipe.lr_step,
                       help="multiply the rate by --lr-gamma every N iterations, 0: fixed "
                            "(default: %(default)s)")
    group.add_argument("--lr-gamma", type=float, default=recipe.lr_gamma,
                       help="(default: %(default)s)")
    group.add_argument("--snapshot", type=int, default=recipe.snapshot,
                       help="snapshot every N iterations (default: %(default)s)")
    group.add_argument("--target-weight", type=float, default=recipe.target_weight,
                       help="weight of the continuous L2 loss (default: %(default)s)")
    group.add_argument("--continuous-loss", choices=CONTINUOUS_LOSSES,
                       default=recipe.continuous_loss,
                       help="soft: the error of each pixel's association mix of superpixel "
                            "means; expected: plus the spread of the means it mixes, the "
                            "expected error of one hard superpixel's mean (default: "
                            "%(default)s)")
    group.add_argument("--position-weight", type=options.position_weight,
                       default=recipe.position_weight,
                       metavar="W",
                       help="multiply the scale of the positions in training (and in the "
                            "run's deploy net): more compact superpixels to learn at; run the "
                            "model with the same superpixels(position_weight=W) (default: "
                            "%(default)s)")
    group.add_argument("--compactness-weight", type=float, default=recipe.compactness_weight,
                       help="weight of the compactness loss (default: %(default)s)")


def dataset_solver(args: argparse.Namespace) -> Path:
    """Check the pairs, write the run's prototxt files, return its solver."""
    if args.solver is not None or args.snapshot_prefix is not None:
        raise ValueError("--dataset writes its own solver and snapshot prefix: drop --solver "
                         "and --snapshot-prefix")
    if args.out is None:
        raise ValueError("--dataset needs --out, the run folder")
    recipe = dataclasses.replace(
        TASK_RECIPE, n_spixels=args.n_segments, patch=args.patch, batch_size=args.batch_size,
        num_steps=args.num_steps, base_lr=args.base_lr, lr_step=args.lr_step,
        lr_gamma=args.lr_gamma, snapshot=args.snapshot, target_weight=args.target_weight,
        compactness_weight=args.compactness_weight, continuous_loss=args.continuous_loss,
        position_weight=args.position_weight,
        max_iter=args.max_iter if args.max_iter is not None else TASK_RECIPE.max_iter)
    return prepare_run(args.dataset, args.target, args.out, recipe, args.val_dataset, args.flow)


def main(argv: list[str] | None = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """Train; 0 also when interrupted (after its snapshot)."""
    if args.max_iter is not None and args.max_iter < 1:  # before --dataset writes a run
        raise ValueError(f"--max-iter must be >= 1, got {args.max_iter}")
    if args.dataset is not None:
        args.solver = dataset_solver(args)
    elif args.out is not None or args.val_dataset is not None:
        raise UsageError("--out and --val-dataset go with --dataset")
    # A bad solver, snapshot or data exits 2; any other error, a divergence
    # (FloatingPointError) included, exits 1 after its snapshot.
    result = train(args.solver or PROTOTXT_DIR / SOLVER, args.gpu, args.weights,
                   args.resume, args.max_iter, args.snapshot_prefix, args.log_csv)
    log.info("stopped at iteration %d, losses %s; log %s", result["iteration"],
             {k: round(v, 4) for k, v in result["losses"].items()}, result["log"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
