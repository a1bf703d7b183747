"""Write the SSN prototxt files (train/val net, deploy net, solver) and initial weights.

With no options it regenerates the committed files in prototxt/; the tests check
that the committed files are what :func:`generate` gives for the defaults. With
--out DIR the solver names the net and the snapshot prefix (under DIR unless
absolute) by absolute paths, so `caffe train --solver DIR/ssn_solver.prototxt` works
from any folder; the snapshot folder is made, and the commands to train and resume
are printed. Every weight has a filler (the label loss's fixed decoder too), so
`caffe train` can start from scratch; --init-weights writes that start as a
.caffemodel, to pass as --weights.
--net downstream writes the example net with SSN inside (prototxt/downstream/):
superpixel pooling of the CNN features for a per-pixel task (docs/TASKS.md).
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from caffe.proto import caffe_pb2
from google.protobuf import text_format

from ssn.atomic import write_atomic
from ssn.cli.command import command_parser, run_command
from ssn.examples.downstream.net import DOWNSTREAM_DIR, DownstreamOptions
from ssn.nets.prototxt import (
    PROTOTXT_DIR,
    RECIPES,
    SOLVER,
    TRAIN_VAL,
    PrototxtOptions,
    data_shapes,
    generate,
    stale_files,
)
from ssn.nets.weights import write_initial_weights

log = logging.getLogger("ssn.cli.make_prototxt")

FLAG_HELP = {"fused": "deploy net: the SLIC iterations as one forward-only SlicIterations "
                      "layer; --no-fused writes the decomposed layers with the original "
                      "release's names",
             "spixel_pooling": "--net downstream: pool the features over the superpixels "
                               "before the head; --no-spixel-pooling: a head per pixel",
             "frozen_batch_norm": "--net downstream: BatchNorm uses the stored statistics "
                                  "in training too (fine-tuning); --no-frozen-batch-norm: "
                                  "the batch's (a CNN trained from scratch)"}
NETS = {"ssn": PrototxtOptions, "downstream": DownstreamOptions}
DOWNSTREAM_ONLY = {f.name for f in dataclasses.fields(DownstreamOptions)} - {
    f.name for f in dataclasses.fields(PrototxtOptions)}


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-make-prototxt",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  ssn-make-prototxt\n"
               "  ssn-make-prototxt --check\n"
               "  ssn-make-prototxt --init-weights models/ssn_init.caffemodel\n"
               "  ssn-make-prototxt --recipe bsds_cpu   # prototxt/bsds_cpu/\n"
               "  ssn-make-prototxt --out /tmp/nets --n-segments 200 "
               "--num-steps 10\n"
               "  ssn-make-prototxt --out /tmp/nets --no-fused   "
               "# decomposed deploy net\n"
               "  ssn-make-prototxt --net downstream   # prototxt/downstream/\n"
               "  ssn-make-prototxt --net downstream --no-spixel-pooling "
               "--label-weight 0 \\\n      --compactness-weight 0 --out /tmp/pixel_head\n")
    parser.add_argument("--net", choices=sorted(NETS), default="ssn",
                        help="the SSN net, or the downstream example with SSN inside "
                        "(default: ssn)")
    parser.add_argument("--recipe", choices=sorted(RECIPES),
                        help="start from a named training set-up instead of the defaults")
    parser.add_argument("--out", "--out-dir", dest="out", type=Path,
                        help="where to write the files (default: prototxt/, or "
                        "prototxt/<recipe>/ with --recipe, prototxt/downstream/ with "
                        "--net downstream)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the files in --out differ")
    parser.add_argument("--init-weights", type=Path,
                        help="also write initial weights of the train net to this .caffemodel")
    ssn, downstream = PrototxtOptions(), DownstreamOptions()
    for option in dataclasses.fields(DownstreamOptions):
        flags = [f"--{option.name.replace('_', '-')}"]
        if option.name == "n_spixels":  # one name for the count across the commands
            flags.insert(0, "--n-segments")
        default = getattr(downstream, option.name)
        shown = (f"(--net downstream; default: {default})" if option.name in DOWNSTREAM_ONLY
                 else f"(default: {getattr(ssn, option.name)}; --net downstream: {default})"
                 if default != getattr(ssn, option.name) else f"(default: {default})")
        if isinstance(option.default, bool):
            parser.add_argument(*flags, dest=option.name, action=argparse.BooleanOptionalAction,
                                                help=FLAG_HELP.get(option.name, "") + f" {shown}")
            continue
        parser.add_argument(*flags, dest=option.name, type=option.type
                            if callable(option.type) else type(option.default),
                            help=shown)
    return parser


def options_from_args(args: argparse.Namespace) -> tuple[PrototxtOptions, Path]:
    """The options (the recipe's or the net's defaults, then any given flags) and the
    output directory.

    Raises
    ------
    ValueError
        A recipe with --net downstream, or a downstream flag without it.
    """
    net = getattr(args, "net", "ssn")
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(NETS[net])
             if getattr(args, f.name) is not None}
    if net == "downstream":
        if args.recipe:
            raise ValueError("--recipe sets up the SSN net; it does not go with --net downstream")
        return dataclasses.replace(DownstreamOptions(), **given), args.out or DOWNSTREAM_DIR
    misplaced = sorted(name for name in DOWNSTREAM_ONLY if getattr(args, name) is not None)
    if misplaced:
        raise ValueError(f"--{misplaced[0].replace('_', '-')} is an option of --net downstream")
    base = RECIPES[args.recipe] if args.recipe else PrototxtOptions()
    out_dir = args.out or (PROTOTXT_DIR / args.recipe if args.recipe else PROTOTXT_DIR)
    return dataclasses.replace(base, **given), out_dir


def main(argv: list[str] | None = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """Write (or with --check compare) the net files; 1 when --check finds stale ones."""
    options, out_dir = options_from_args(args)  # a ValueError: exit 2
    files = generate(options, out_dir)
    if args.check:
        stale = stale_files(files, out_dir)
        for name in stale:
            log.error("%s differs from the generator's output", out_dir / name)
        return 1 if stale else 0
    out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        write_atomic(out_dir / name, text)
        log.info("wrote %s", out_dir / name)
    if args.init_weights:
        net_param = text_format.Parse(files[TRAIN_VAL], caffe_pb2.NetParameter())
        write_initial_weights(net_param, data_shapes(options), args.init_weights)
        log.info("wrote %s", args.init_weights)
    if SOLVER in files:
        prefix = text_format.Parse(files[SOLVER], caffe_pb2.SolverParameter()).snapshot_prefix
        snapshot_folder(prefix).mkdir(parents=True, exist_ok=True)
        print(training_commands(out_dir / SOLVER, prefix, args.init_weights))
    return 0


def snapshot_folder(prefix: str) -> Path:
    """The folder of a solver's snapshot prefix (Caffe refuses to start without it); a
    relative prefix (the committed files') is relative to the checkout's root."""
    folder = Path(prefix).parent
    return folder if folder.is_absolute() else PROTOTXT_DIR.parent / folder


def training_commands(solver_path: Path, prefix: str, weights: Path | None) -> str:
    """How to train and resume with these files, with Caffe's tool and with ssn-train."""
    solver_path = solver_path.resolve()
    where = "from any folder"
    if not Path(prefix).is_absolute():  # the committed files: paths from the checkout's root
        root = PROTOTXT_DIR.resolve().parent
        solver_path, where = solver_path.relative_to(root), f"from {root}"
    start = f" --weights={weights.resolve()}" if weights else ""
    state = f"{prefix}_iter_<N>.solverstate"
    return "\n".join([
        f"To train with Caffe's tool, {where} (BSDS500 from $SSN_DATA_ROOT or "
        "./data/BSDS500):",
        f"  caffe train --solver={solver_path}{start}",
        "to resume (the data stream restarts from its first batch):",
        f"  caffe train --solver={solver_path} --snapshot={state}",
        "or with ssn-train, which also continues the data stream when resuming:",
        f"  ssn-train --solver {solver_path}" + (f" --weights {weights.resolve()}" if weights
                                                 else ""),
        f"  ssn-train --solver {solver_path} --resume {state}",
    ])


if __name__ == "__main__":
    sys.exit(main())
