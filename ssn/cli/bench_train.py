"""The ``ssn-bench-train`` command: its flags; the work and its description are in
:mod:`ssn.benchmarks.training`."""
from __future__ import annotations

import argparse
import sys

import numpy as np

import ssn.benchmarks.training as training_module
from ssn.benchmarks.training import run
from ssn.cli import options
from ssn.device import use_device
from ssn.nets.generators import SSNConfig


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=training_module.__doc__, formatter_class=argparse.ArgumentDefaultsHelpFormatter,
        epilog="examples:\n  python tools/bench_train.py\n"
               "  python tools/bench_train.py --batch 2 --num-steps 10")
    parser.add_argument("--batch", type=int, default=6, help="images per batch")
    parser.add_argument("--patch", type=int, default=201, help="patch size")
    options.add_count(parser, 100)
    options.add_steps(parser, 5)
    options.add_gpu(parser)
    parser.add_argument("--feature-dim", type=int, default=20, help="pixel feature channels")
    parser.add_argument("--repeats", type=int, default=3, help="timed iterations")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_device(args.gpu)
    np.random.seed(0)
    config = SSNConfig(height=args.patch, width=args.patch, n_spixels=args.n_segments,
                       num_steps=args.num_steps, feature_dim=args.feature_dim,
                       batch_size=args.batch)
    run(config, args.repeats)
    return 0


if __name__ == "__main__":
    sys.exit(main())
