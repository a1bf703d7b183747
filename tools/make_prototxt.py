#!/usr/bin/env python
"""Write the SSN prototxt files (train/val net, deploy net, solver) and initial weights.

With no options it regenerates the committed files in prototxt/. The initial
.caffemodel (random CNN weights, fixed helper weights) lets `caffe train` start
from scratch: caffe train --solver prototxt/ssn_solver.prototxt --weights <it>.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path

from caffe.proto import caffe_pb2
from google.protobuf import text_format

from ssn.prototxt import PROTOTXT_DIR, TRAIN_VAL, PrototxtOptions, data_shapes, generate
from ssn.weights import write_initial_weights

log = logging.getLogger("make_prototxt")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python tools/make_prototxt.py\n"
               "  python tools/make_prototxt.py --check\n"
               "  python tools/make_prototxt.py --init-weights models/ssn_init.caffemodel\n"
               "  python tools/make_prototxt.py --out-dir /tmp/nets --n-spixels 200 "
               "--num-steps 10\n")
    parser.add_argument("--out-dir", type=Path, default=PROTOTXT_DIR,
                        help="where to write the files (default: prototxt/)")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if the files in --out-dir differ")
    parser.add_argument("--init-weights", type=Path,
                        help="also write initial weights of the train net to this .caffemodel")
    for option in dataclasses.fields(PrototxtOptions):
        parser.add_argument(f"--{option.name.replace('_', '-')}", type=option.type
                            if callable(option.type) else type(option.default),
                            default=option.default, help=f"(default: {option.default})")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    options = PrototxtOptions(**{f.name: getattr(args, f.name)
                                 for f in dataclasses.fields(PrototxtOptions)})
    files = generate(options)
    if args.check:
        stale = [name for name, text in files.items()
                 if not (args.out_dir / name).exists()
                 or (args.out_dir / name).read_text() != text]
        for name in stale:
            log.error("%s differs from the generator's output", args.out_dir / name)
        return 1 if stale else 0
    args.out_dir.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (args.out_dir / name).write_text(text)
        log.info("wrote %s", args.out_dir / name)
    if args.init_weights:
        net_param = text_format.Parse(files[TRAIN_VAL], caffe_pb2.NetParameter())
        write_initial_weights(net_param, data_shapes(options), args.init_weights)
        log.info("wrote %s", args.init_weights)
    return 0


if __name__ == "__main__":
    sys.exit(main())
