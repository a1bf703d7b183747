"""The ``ssn-bench-calibration`` command: its flags; the work and its description are in
:mod:`ssn.benchmarks.calibration`."""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import Optional

import ssn.benchmarks.calibration as calibration_module
from ssn.benchmarks.calibration import (
    COUNTS,
    POSITION_WEIGHTS,
    SIZES,
    fit_rows,
    markdown,
    measure,
    paired,
    paired_markdown,
    read_rows,
    summary,
    val_images,
    worst,
    write_rows,
    write_summary,
)
from ssn.cli import options
from ssn.cli.command import command_parser, run_command
from ssn.model_metadata import (
    DEFAULTS,
    find_settings,
    metadata_path,
    read_metadata,
    write_metadata,
)

log = logging.getLogger("ssn.cli.bench_calibration")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-bench-calibration",
        description=calibration_module.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  ssn-bench-calibration --images 20 --megapixels 0 0.5 "
               "--rows out/cal_rows.csv\n"
               "  ssn-bench-calibration --images 2 --megapixels 24 "
               "--n-segments 200 1000\n"
               "  ssn-bench-calibration --features pixel --images 10\n"
               "  ssn-bench-calibration --weights run/ssn_iter_1000.caffemodel "
               "--images 10 --megapixels 0 0.5 2 --write-metadata\n"
               "  ssn-bench-calibration --from-rows out/cal_rows.csv "
               "--summary docs/calibration.csv\n"
               "  ssn-bench-calibration --weights ssn/models/ssn_synthflow.caffemodel "
               "--megapixels 0 --size-from ssn/models/ssn_bsds.json --write-metadata\n")
    parser.add_argument("--weights", type=Path,
                        help="the model (default: the bundled one); its metadata file is "
                             "the one --write-metadata updates")
    options.add_features(parser)
    parser.add_argument("--images", type=options.positive_int, default=20,
                        help="N BSDS500 val images, from --first-image (default: 20)")
    parser.add_argument("--first-image", type=int, default=0, metavar="K",
                        help="start at the K-th val image (0: the first), e.g. to check a "
                             "calibration on images it was not fitted to (default: 0)")
    parser.add_argument("--big-images", type=options.positive_int, default=2,
                        help="images at sizes of --big-from megapixels and more (default: 2)")
    parser.add_argument("--big-from", type=float, default=10.0,
                        help="megapixels from which --big-images apply (default: 10)")
    parser.add_argument("--megapixels", type=float, nargs="+", default=list(SIZES),
                        help="image sizes; 0: BSDS500's own 481x321 (default: "
                             f"{' '.join(f'{s:g}' for s in SIZES)})")
    options.add_count(parser, list(COUNTS), many=True)
    parser.add_argument("--position-weights", type=options.position_weight, nargs="+",
                        default=list(POSITION_WEIGHTS), metavar="W",
                        help="position weights (default: "
                             f"{' '.join(f'{w:g}' for w in POSITION_WEIGHTS)})")
    options.add_data_root(parser)
    parser.add_argument("--from-rows", type=Path, nargs="+", metavar="CSV",
                        help="use rows measured earlier (--rows files) instead of measuring")
    parser.add_argument("--rows", type=Path, metavar="CSV",
                        help="write the per-image rows here (default: not written)")
    parser.add_argument("--summary", type=Path, metavar="CSV",
                        help="write the table here (default: not written)")
    parser.add_argument("--fit", action=argparse.BooleanOptionalAction, default=False,
                        help="fit a calibration to the rows and print it (default: off)")
    parser.add_argument("--write-metadata", nargs="?", const="", metavar="JSON",
                        help="fit, and write the calibration into this metadata file "
                             "(default path: the model's, x.caffemodel -> x.json; "
                             "ssn/models/pixel.json for --features pixel), keeping its "
                             "other settings")
    parser.add_argument("--measured", default="",
                        help="what the fit was measured on, recorded with it")
    parser.add_argument("--size-from", type=Path, metavar="JSON",
                        help="fit only the terms without the image size and take those with "
                             "it from this metadata file's calibration (for a model measured "
                             "at one size) (default: fit all)")
    return parser


def target_metadata(args: argparse.Namespace) -> Path:
    """The metadata file that --write-metadata updates."""
    from ssn.inference import resolve_features
    from ssn.model_metadata import PIXEL_METADATA
    if args.write_metadata:
        return Path(args.write_metadata)
    _, weights = resolve_features(args.features, args.weights)
    return PIXEL_METADATA if weights is None else metadata_path(weights)


def collect_rows(args: argparse.Namespace) -> list[dict]:
    """The rows of --from-rows, or measured now (logged as they come)."""
    if args.from_rows:
        return read_rows(args.from_rows)
    rows = []
    if args.first_image < 0:
        raise ValueError(f"--first-image must be >= 0, got {args.first_image}")
    images = val_images(args.first_image + args.images, args.data_root)[args.first_image:]
    for row in measure(images, args.megapixels,
                       args.n_segments, args.position_weights, args.features, args.weights,
                       args.big_images, args.big_from, args.data_root):
        log.info("%s %dx%d pw %g: %d requested, %d cells, %d superpixels (%.1f s)",
                 row["image"], row["width"], row["height"], row["position_weight"],
                 row["requested"], row["cells"], row["actual"], row["seconds"])
        rows.append(row)
    return rows


def main(argv: Optional[list[str]] = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """The command's work; its exit status."""
    metadata_file = target_metadata(args) if args.write_metadata is not None else None
    existing = find_settings(metadata_file) if metadata_file else None
    size_from = read_metadata(args.size_from).calibration if args.size_from else None
    if args.size_from and size_from is None:
        raise ValueError(f"--size-from {args.size_from} has no calibration")
    rows = collect_rows(args)
    if args.rows:
        write_rows(rows, args.rows)
    table = summary(rows)
    if args.summary:
        write_summary(table, args.summary)
    print("Mean actual / requested superpixels (range over the images), calibrated grid:")
    print(markdown(table))
    print(f"largest deviation of a mean: {worst(table):.1%}")
    same_images = paired(rows)
    if same_images:
        print("\nEach resized size against the same images at 481x321 (same weight and count):")
        print(paired_markdown(same_images))
    if args.fit or metadata_file:
        calibration = fit_rows(rows, args.measured, size_from)
        print(f"fitted calibration: {calibration.to_dict()}")
        if metadata_file:
            settings = dataclasses.replace(existing or dataclasses.replace(
                DEFAULTS, description="the default settings; calibrated by "
                "ssn-bench-calibration"), calibration=calibration)
            write_metadata(metadata_file, settings)
            log.info("wrote the calibration into %s", metadata_file)
    return 0


if __name__ == "__main__":
    sys.exit(main())
