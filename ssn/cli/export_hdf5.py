"""The ``ssn-export-hdf5`` command: its flags; the work and its description are in
:mod:`ssn.training.hdf5_export`."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Optional

from google.protobuf import text_format

import ssn.training.hdf5_export as hdf5_export_module
from ssn.atomic import write_atomic
from ssn.bsds import data_root, read_split
from ssn.cli import options
from ssn.nets.generators import SSNConfig, train_net
from ssn.nets.prototxt import HEADER
from ssn.training.hdf5_export import export_split
from ssn.training.samples import BSDSSampler

log = logging.getLogger("ssn.cli.export_hdf5")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=hdf5_export_module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python tools/export_hdf5.py --out data/hdf5\n"
               "  python tools/export_hdf5.py --no-augment --train-samples 200 "
               "--val-samples 100 --out /tmp/bsds_h5\n")
    options.add_out(parser)
    options.add_data_root(parser)
    parser.add_argument("--train-samples", type=int, default=1200,
                        help="training samples to write (default: 1200)")
    parser.add_argument("--val-samples", type=int, default=60,
                        help="validation samples to write (default: 60)")
    parser.add_argument("--augment", action=argparse.BooleanOptionalAction, default=True,
                        help="random scale/flip/crop (default); --no-augment: centre crops")
    parser.add_argument("--patch", type=int, default=201, help="patch size (default: 201)")
    options.add_count(parser, 100)
    parser.add_argument("--num-label-channels", type=int, default=50,
                        help="one-hot label channels (default: 50)")
    parser.add_argument("--per-file", type=int, default=24,
                        help="samples per .h5 file (default: 24)")
    parser.add_argument("--seed", type=int, default=2356, help="random seed (default: 2356)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    config = SSNConfig(height=args.patch, width=args.patch, n_spixels=args.n_segments,
                       num_label_channels=args.num_label_channels)
    lists = []
    for split, count in (("train", args.train_samples), ("val", args.val_samples)):
        root = data_root(args.data_root)
        sampler = BSDSSampler(split, (args.patch, args.patch), config.grid, 1,
                              args.num_label_channels, args.seed, root, read_split(split, root))
        lists.append(export_split(sampler, args.out, split, count, args.augment,
                                  args.per_file, args.seed))
        log.info("wrote %d %s samples, listed in %s", count, split, lists[-1])
    net = args.out / "ssn_train_val_hdf5.prototxt"
    write_atomic(net, HEADER + text_format.MessageToString(
        train_net(config, hdf5_sources=(str(lists[0].resolve()), str(lists[1].resolve())))))
    log.info("wrote %s (the train/val net reading these files)", net)
    return 0


if __name__ == "__main__":
    sys.exit(main())
