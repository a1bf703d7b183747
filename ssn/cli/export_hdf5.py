"""The ``ssn-export-hdf5`` command: its flags; the work and its description are in
:mod:`ssn.training.hdf5_export`."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

import ssn.training.hdf5_export as hdf5_export_module
from ssn.atomic import write_atomic
from ssn.bsds import data_root, read_split
from ssn.cli import options
from ssn.cli.command import command_parser, run_command
from ssn.grid import grid_shape
from ssn.training.hdf5_export import export_split
from ssn.training.samples import BSDSSampler

log = logging.getLogger("ssn.cli.export_hdf5")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-export-hdf5",
        description=hdf5_export_module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  ssn-export-hdf5 --out data/hdf5\n"
               "  ssn-export-hdf5 --no-augment --train-samples 200 "
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
    parser.add_argument("--jobs", type=options.positive_int, default=1,
                        help="worker processes (default: 1); the files do not depend on it")
    parser.add_argument("--compress", action=argparse.BooleanOptionalAction, default=True,
                        help="gzip the datasets (default); --no-compress: about 10x larger "
                             "files that load several times faster")
    parser.add_argument("--net", action=argparse.BooleanOptionalAction, default=True,
                        help="also write the train/val net reading the files (default); "
                             "--no-net needs no pycaffe")
    return parser


def write_train_net(args: argparse.Namespace, train_list: Path, val_list: Path) -> Path:
    """Write the train/val net that reads the exported files; return its path."""
    from google.protobuf import text_format

    from ssn.nets.generators import SSNConfig, train_net
    from ssn.nets.prototxt import HEADER

    config = SSNConfig(height=args.patch, width=args.patch, grid_request=args.n_segments,
                       num_label_channels=args.num_label_channels)
    net = args.out / "ssn_train_val_hdf5.prototxt"
    write_atomic(net, HEADER + text_format.MessageToString(
        train_net(config, hdf5_sources=(str(train_list.resolve()), str(val_list.resolve())))))
    return net


def main(argv: Optional[list[str]] = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """Write the HDF5 samples of both splits (and the net reading them)."""
    grid = grid_shape(args.n_segments, args.patch, args.patch)
    lists = []
    for split, count in (("train", args.train_samples), ("val", args.val_samples)):
        root = data_root(args.data_root)
        sampler = BSDSSampler(split, (args.patch, args.patch), grid, 1,
                              args.num_label_channels, args.seed, root, read_split(split, root))
        lists.append(export_split(sampler, args.out, split, count, args.augment,
                                  args.per_file, args.seed, args.jobs, args.compress))
        log.info("wrote %d %s samples, listed in %s", count, split, lists[-1])
    if args.net:
        net = write_train_net(args, *lists)
        log.info("wrote %s (the train/val net reading these files)", net)
    return 0

if __name__ == "__main__":
    sys.exit(main())
