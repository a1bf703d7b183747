"""Seconds per image of SSN (pixel and deep features) and the fastest classical
superpixels, measured side by side in one process with interleaved rounds.

Peers: fast-slic (AVX2), OpenCV-contrib SEEDS, SLICO and LSC, scikit-image SLIC;
the optional ones need `pip install .[bench]` and `pip install
--no-build-isolation fast-slic` and are listed as skipped without them. Each row
gives the median seconds, the actual superpixel count, and the ratio to
scikit-image SLIC in the same run. Every method gets the photo as it is read
(8-bit RGB, uint8), so none of them pays for a conversion the others skip.
A benchmark, not a test.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from skimage import data

from ssn.benchmarks.peers import methods, time_rounds
from ssn.bsds import DataRootError, load_bsds, read_split
from ssn.cli import options
from ssn.cli.command import command_parser, run_command
from ssn.images import as_rgb, read_image


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-bench-peers",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  ssn-bench-peers\n"
               "  ssn-bench-peers --n-segments 400 --rounds 9 --image photo.jpg\n")
    options.add_count(parser, [100, 400, 1000], many=True)
    options.add_steps(parser)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds (default: 5)")
    parser.add_argument("--image", type=Path,
                        help="image to time (default: the first BSDS500 val image, or "
                             "scikit-image's astronaut cropped to 481x321 without the data)")
    parser.add_argument("--weights", type=Path, help="SSN model (default: the bundled one)")
    return parser


def bench_image(path) -> tuple[object, str]:
    if path is not None:
        return read_image(path), str(path)
    try:
        image_id = read_split("val")[0]
        rgb = as_rgb(load_bsds(image_id, "val").rgb, keep_uint8=True)
        name = f"BSDS val {image_id}"
    except DataRootError:
        rgb, name = as_rgb(data.astronaut()[:321, :481], keep_uint8=True), "astronaut 481x321"
    if rgb.shape[0] > rgb.shape[1]:
        rgb = rgb.transpose(1, 0, 2).copy()
    return rgb, name


def main(argv: list[str] | None = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """The command's work; its exit status."""
    rgb, name = bench_image(args.image)
    functions, skipped = methods(args.num_steps, str(args.weights) if args.weights else None)
    results = time_rounds(functions, rgb, args.n_segments, args.rounds)
    print(f"# {rgb.shape[1]}x{rgb.shape[0]} ({name}), CPU, median of {args.rounds} "
          f"interleaved rounds, seconds (actual count, ratio to scikit-image SLIC)")
    if skipped:
        print(f"# skipped, not installed: {', '.join(skipped)}")
    print("| method | " + " | ".join(f"n={count}" for count in args.n_segments) + " |")
    print("|---|" + "---|" * len(args.n_segments))
    for method in functions:
        cells = []
        for count in args.n_segments:
            entry, slic = results[(method, count)], results[("slic", count)]
            cells.append(f"{entry['seconds']:.4f} ({entry['actual']}, "
                         f"{entry['seconds'] / slic['seconds']:.2f})")
        print(f"| {method} | " + " | ".join(cells) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
