"""The ``ssn-bench-sizes`` command: its flags; the work and its description are in
:mod:`ssn.benchmarks.sizes`."""
from __future__ import annotations

import argparse
import sys

import ssn.benchmarks.sizes as sizes_module
from ssn.benchmarks.sizes import SIZES, measure, megapixel_size, table_row
from ssn.cli import options
from ssn.cli.command import DefaultsHelpFormatter, command_parser, run_command


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-bench-sizes",
        description=sizes_module.__doc__,
        formatter_class=DefaultsHelpFormatter,
        epilog="examples:\n  ssn-bench-sizes\n"
               "  ssn-bench-sizes --megapixels 0.15 2 --modes pixel")
    parser.add_argument("--megapixels", type=float, nargs="+", default=sorted(SIZES),
                        help="image sizes, in megapixels (3:2)")
    parser.add_argument("--modes", nargs="+", choices=("deep", "pixel"),
                        default=["deep", "pixel"], help="feature modes")
    options.add_count(parser, 1000)
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds one run may take")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """The command's work; its exit status."""
    print(f"# superpixels(n_segments={args.n_segments}), CPU, one fresh process per run; "
          "peak = the process's VmHWM")
    print("| size | mode | seconds | peak GiB | superpixels |")
    print("|---|---|---|---|---|")
    failed = False
    for megapixels in args.megapixels:
        height, width = megapixel_size(megapixels)
        for features in args.modes:
            result = measure(height, width, features, args.n_segments, args.timeout)
            failed = failed or "error" in result
            print(table_row(megapixels, height, width, features, result), flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
