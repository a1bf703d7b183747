"""Write the SSN prototxt files (train/val net, deploy net, solver) and initial weights.

With no options it regenerates the committed files in prototxt/; the tests check
that the committed files are what :func:`generate` gives for the defaults. The
initial .caffemodel (random CNN weights, fixed helper weights) lets `caffe train`
start from scratch: caffe train --solver prototxt/ssn_solver.prototxt --weights <it>.
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
from ssn.nets.prototxt import (
    PROTOTXT_DIR,
    RECIPES,
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
                      "release's names"}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python tools/make_prototxt.py\n"
               "  python tools/make_prototxt.py --check\n"
               "  python tools/make_prototxt.py --init-weights models/ssn_init.caffemodel\n"
               "  python tools/make_prototxt.py --recipe bsds_cpu   # prototxt/bsds_cpu/\n"
               "  python tools/make_prototxt.py --out /tmp/nets --n-segments 200 "
               "--num-steps 10\n"
               "  python tools/make_prototxt.py --out /tmp/nets --no-fused   "
               "# decomposed deploy net\n")
    parser.add_argument("--recipe", choices=sorted(RECIPES),
                        help="start from a named training set-up instead of the defaults")
    parser.add_argument("--out", "--out-dir", dest="out", type=Path,
                        help="where to write the files (default: prototxt/, or "
                        "prototxt/<recipe>/ with --recipe)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the files in --out differ")
    parser.add_argument("--init-weights", type=Path,
                        help="also write initial weights of the train net to this .caffemodel")
    for option in dataclasses.fields(PrototxtOptions):
        flags = [f"--{option.name.replace('_', '-')}"]
        if option.name == "n_spixels":  # one name for the count across the commands
            flags.insert(0, "--n-segments")
        if isinstance(option.default, bool):
            parser.add_argument(*flags, dest=option.name, action=argparse.BooleanOptionalAction,
                                help=FLAG_HELP.get(option.name, "")
                                + f" (default: {option.default})")
            continue
        parser.add_argument(*flags, dest=option.name, type=option.type
                            if callable(option.type) else type(option.default),
                            help=f"(default: {option.default})")
    return parser


def options_from_args(args: argparse.Namespace) -> tuple[PrototxtOptions, Path]:
    """The options (the recipe's or the defaults, then any given flags) and the
    output directory."""
    base = RECIPES[args.recipe] if args.recipe else PrototxtOptions()
    given = {f.name: getattr(args, f.name) for f in dataclasses.fields(PrototxtOptions)
             if getattr(args, f.name) is not None}
    out_dir = args.out or (PROTOTXT_DIR / args.recipe if args.recipe else PROTOTXT_DIR)
    return dataclasses.replace(base, **given), out_dir


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    options, out_dir = options_from_args(args)
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
