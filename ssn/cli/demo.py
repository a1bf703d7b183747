"""Compute SSN superpixels of bundled sample images and write label maps and overlays.

Runs SSN on scikit-image's sample images, with connectivity enforced: with the
trained model when one is bundled, otherwise the pixel-feature SSN
(differentiable SLIC on position and Lab). For each image it writes
<out>/<name>.npy (int32 labels), <out>/<name>_overlay.png (boundaries) and
<out>/<name>_ssn_vs_slic.png (SSN's boundaries left, scikit-image SLIC's at the
same requested count right).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from skimage import data

from ssn.cli import options
from ssn.cli.command import command_parser, run_command
from ssn.device import use_device
from ssn.evaluation.baselines import slic_labels
from ssn.images import as_rgb, overlay, save_npy, save_png, side_by_side
from ssn.inference import superpixels

SAMPLES = {"astronaut": data.astronaut, "coffee": data.coffee, "chelsea": data.chelsea}
log = logging.getLogger("ssn.cli.demo")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-demo",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  ssn-demo\n"
               "  ssn-demo --n-segments 400 --num-steps 5 --out /tmp/demo\n")
    options.add_out(parser, Path("out/demo"))
    options.add_count(parser, 200)
    options.add_steps(parser)
    options.add_grid(parser)
    options.add_features(parser)
    options.add_gpu(parser)
    parser.add_argument("--images", nargs="+", choices=sorted(SAMPLES), default=sorted(SAMPLES),
                        help="sample images to process (default: all)")
    return parser


def main(argv: list[str] | None = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """Segment the sample images and write their overlays."""
    use_device(args.gpu)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in args.images:
        image = SAMPLES[name]()
        labels = superpixels(image, args.n_segments, num_steps=args.num_steps,
                             features=args.features,
                             grid=args.grid)
        slic = slic_labels(as_rgb(image), args.n_segments)
        ssn_overlay = overlay(image, labels)
        save_npy(args.out / f"{name}.npy", labels)
        save_png(args.out / f"{name}_overlay.png", ssn_overlay)
        save_png(args.out / f"{name}_ssn_vs_slic.png",
                 side_by_side(ssn_overlay, overlay(image, slic)))
        log.info("%s: %dx%d, %d SSN superpixels (SLIC: %d) -> %s", name, image.shape[1],
                 image.shape[0], labels.max() + 1, slic.max() + 1,
                 args.out / f"{name}_ssn_vs_slic.png")
    return 0



if __name__ == "__main__":
    sys.exit(main())
