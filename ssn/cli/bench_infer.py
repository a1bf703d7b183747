"""The ``ssn-bench-infer`` command: its flags; the work and its description are in
:mod:`ssn.benchmarks.inference`."""
from __future__ import annotations

import argparse
import sys

import ssn.benchmarks.inference as inference_module
from ssn.benchmarks.inference import (
    convolution_times,
    median_seconds,
    time_mode,
    winograd_setting,
)
from ssn.bsds import load_bsds, read_split
from ssn.cli import options
from ssn.cli.command import DefaultsHelpFormatter, command_parser, run_command
from ssn.device import use_device
from ssn.evaluation.baselines import slic_labels
from ssn.images import as_rgb
from ssn.inference import STAGES


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-bench-infer",
        description=inference_module.__doc__,
        formatter_class=DefaultsHelpFormatter,
        epilog="examples:\n  ssn-bench-infer\n"
               "  ssn-bench-infer --n-segments 200 --repeats 3\n"
               "  ssn-bench-infer --no-fused   # the decomposed SLIC layers\n"
               "  ssn-bench-infer --convolutions --n-segments 400")
    options.add_count(parser, [100, 400, 1000], many=True)
    options.add_steps(parser)
    options.add_gpu(parser)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per figure")
    parser.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True,
                        help="SLIC iterations as one SlicIterations layer; --no-fused: the "
                             "decomposed layers")
    parser.add_argument("--winograd", action=argparse.BooleanOptionalAction, default=True,
                        help="the CNN's 3x3 convolutions forward by Winograd F(4x4, 3x3) "
                             "where it pays; --no-winograd: as before it "
                             "(SSN_CONV_WINOGRAD=0)")
    parser.add_argument("--convolutions", action=argparse.BooleanOptionalAction,
                        default=False,
                        help="also time each convolution of the deep net's CNN without and "
                             "with Winograd, alternately (ms, and GFLOP/s of the direct sum)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """The command's work; its exit status."""
    use_device(args.gpu)
    image_id = read_split("val")[0]
    rgb = as_rgb(load_bsds(image_id, "val").rgb)
    if rgb.shape[0] > rgb.shape[1]:
        rgb = rgb.transpose(1, 0, 2).copy()
    print(f"# {rgb.shape[1]}x{rgb.shape[0]} image (BSDS val {image_id}), {args.num_steps} "
          f"steps, {'fused' if args.fused else 'decomposed'} SLIC layers, CPU, median of "
          f"{args.repeats}, seconds")
    columns = list(STAGES)
    print(f"{'mode':6s} {'n':>5s} " + " ".join(f"{stage[:8]:>8s}" for stage in columns)
          + f" {'total':>7s} {'skimage SLIC':>12s} {'ratio':>6s}")
    for count in args.n_segments:
        slic = median_seconds(lambda count=count: slic_labels(rgb, count), args.repeats)
        for features in ("deep", "pixel"):
            with winograd_setting(None if args.winograd else "0"):
                t = time_mode(rgb, count, args.num_steps, features, args.repeats, args.fused)
            print(f"{features:6s} {count:5d} " + " ".join(f"{t[stage]:8.4f}" for stage in columns)
                  + f" {t['total']:7.3f} {slic:12.3f} {t['total'] / slic:6.1f}")
    if args.convolutions:
        print(f"# the CNN's convolutions, forward, without and with Winograd, alternately; "
              f"median of {args.repeats}, ms (GFLOP/s of the direct sum)")
        print(f"{'layer':14s} {'C->M':>7s} {'output':>8s} {'without':>15s} {'with':>15s} "
              f"{'ratio':>6s}")
        for conv in convolution_times(rgb, args.n_segments[0], args.num_steps, args.repeats):
            channels, out_channels, height, width = conv["shape"]
            cells = [f"{conv[key] * 1e3:6.1f} ({conv['flops'] / conv[key] / 1e9:4.0f})"
                     for key in ("off", "on")]
            print(f"{conv['name']:14s} {f'{channels}->{out_channels}':>7s} "
                  f"{f'{height}x{width}':>8s} {cells[0]:>15s} {cells[1]:>15s} "
                  f"{conv['off'] / conv['on']:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
