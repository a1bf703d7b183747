"""The ``ssn-bench-train`` command: its flags; the work and its description are in
:mod:`ssn.benchmarks.training`."""
from __future__ import annotations

import argparse
import sys

import numpy as np

import ssn.benchmarks.training as training_module
from ssn.benchmarks.training import run as run_benchmark
from ssn.cli import options
from ssn.cli.command import DefaultsHelpFormatter, command_parser, run_command
from ssn.device import use_device
from ssn.nets.generators import SSNConfig


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-bench-train",
        description=training_module.__doc__, formatter_class=DefaultsHelpFormatter,
        epilog="examples:\n  ssn-bench-train\n"
               "  ssn-bench-train --no-fused-cnn   # the original CNN layout, to compare\n"
               "  ssn-bench-train --batch 2 --num-steps 10\n"
               "  ssn-bench-train --torch-python ~/torch-venv/bin/python")
    parser.add_argument("--batch", type=int, default=6, help="images per batch")
    parser.add_argument("--patch", type=int, default=201, help="patch size")
    options.add_count(parser, 100)
    options.add_steps(parser, 5)
    options.add_gpu(parser)
    parser.add_argument("--feature-dim", type=int, default=20, help="pixel feature channels")
    parser.add_argument("--fused-decoder", action=argparse.BooleanOptionalAction, default=True,
                        help="the label loss's superpixel-to-pixel mix as one SpixelToPixel "
                             "layer and its renormalisation inside LossWithoutSoftmax; "
                             "--no-fused-decoder: the chains of seven and six layers they "
                             "replaced")
    parser.add_argument("--fused-cnn", action=argparse.BooleanOptionalAction, default=True,
                        help="the feature CNN's Interps at the input's size and its last "
                             "convolution as one ConcatConvolution; --no-fused-cnn: Crop, "
                             "Concat and Convolution, as in the original")
    parser.add_argument("--repeats", type=int, default=3, help="timed iterations")
    parser.add_argument("--torch-python", metavar="PYTHON",
                        help="an interpreter with PyTorch (a separate venv): also time the "
                             "same feature CNN trained there, and print the ratio")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """The command's work; its exit status."""
    use_device(args.gpu)
    np.random.seed(0)
    config = SSNConfig(height=args.patch, width=args.patch, grid_request=args.n_segments,
                       num_steps=args.num_steps, feature_dim=args.feature_dim,
                       batch_size=args.batch, fused_decoder=args.fused_decoder,
                       fused_cnn=args.fused_cnn)
    run_benchmark(config, args.repeats, args.torch_python)  # a RuntimeError: exit 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
