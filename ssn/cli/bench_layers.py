"""The ``ssn-bench-layers`` command: its flags; the work and its description are in
:mod:`ssn.benchmarks.layers`."""
from __future__ import annotations

import argparse
import sys

import ssn.benchmarks.layers as layers_module
from ssn.benchmarks.layers import (
    cuda_synchronizer,
    full_image_benchmark,
    fused_benchmark,
    no_sync,
    run_benchmark,
)
from ssn.cli import options
from ssn.cli.command import DefaultsHelpFormatter, command_parser, run_command
from ssn.device import use_device


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-bench-layers",
        description=layers_module.__doc__, formatter_class=DefaultsHelpFormatter,
        epilog="examples:\n  ssn-bench-layers\n"
               "  ssn-bench-layers --no-full-image --repeats 50\n"
               "  ssn-bench-layers --no-layers --no-full-image   "
               "# fused vs decomposed only\n"
               "  ssn-bench-layers --height 201 --width 201 --n-segments 100 "
               "--batch 6\n"
               "  ssn-bench-layers --gpu 0")
    parser.add_argument("--batch", type=int, default=1, help="images per batch")
    parser.add_argument("--channels", type=int, default=20, help="feature channels")
    parser.add_argument("--height", type=int, default=321, help="image height")
    parser.add_argument("--width", type=int, default=481, help="image width")
    options.add_count(parser, 400)
    parser.add_argument("--repeats", type=int, default=20, help="timed runs per figure")
    parser.add_argument("--layers", action=argparse.BooleanOptionalAction, default=True,
                        help="also time one differentiable iteration and each SSN layer, "
                             "forward and backward")
    parser.add_argument("--full-image", action=argparse.BooleanOptionalAction, default=True,
                        help="also time the whole train net on one image (10 SLIC steps)")
    options.add_gpu(parser)
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """The command's work; its exit status."""
    sync, device = no_sync, "CPU"
    use_device(args.gpu)
    if args.gpu >= 0:
        sync, device = cuda_synchronizer(), f"GPU {args.gpu}"
    fused_benchmark(args.batch, args.channels, args.height, args.width, args.n_segments,
                    args.repeats, sync=sync, device=device)
    if args.layers:
        run_benchmark(args.batch, args.channels, args.height, args.width, args.n_segments,
                      args.repeats, sync, device)
    if args.full_image:
        full_image_benchmark(args.height, args.width, args.n_segments, 10,
                             max(2, args.repeats // 5), sync, device)
    return 0


if __name__ == "__main__":
    sys.exit(main())
