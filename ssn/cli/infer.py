"""Compute SSN superpixels for many images, on one core, all cores or a Dask cluster.

Inputs are image files, directories, glob patterns or list files (.txt, one
path per line). For each image it writes, in --out: <name>.npy (int32 H x W
labels 0..K-1), <name>_labels.png (16-bit labels), <name>_overlay.png
(boundaries on the image) and, last, <name>.ssn.json (the settings that made
them, the image's size and time, each file's hash); with --mask-dir, labels are
0 outside the image's mask and 1..K inside; per run summary.csv /
summary.json (rebuilt from the records on disk) and config.json. <name> is the
image's stem, or where inputs share a stem their path below the folder they
share (a/img, b/img).

An image whose results verify (same settings, same image, files intact) is
skipped unless --overwrite; anything else is recomputed. An --out made with
other settings is refused (exit 2) unless --overwrite. A bad image or input (a
symlink loop, a folder that cannot be read, a name the file system refuses) is
reported, in the summary too, and skipped (exit 1); a bad --out, a full disk or
a missing device stops the run with one message (exit 2), keeping what is
finished; SIGTERM exits 143 and Ctrl-C 130, keeping what is finished. Outputs
are known by their records: an input named x_overlay.png is an image like any.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

from ssn.cli import options
from ssn.cli.command import command_parser, run_command

log = logging.getLogger("ssn.infer")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-infer",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  ssn-infer data/BSDS500/images/val --out out/val_100\n"
               "  ssn-infer 'photos/*.jpg' --n-segments 400 --features pixel "
               "--out out/p400\n"
               "  ssn-infer list.txt --weights model.caffemodel --gpu 0 "
               "--out out/x\n"
               "  ssn-infer photos/ --mask-dir masks/ --features pixel "
               "--out out/masked\n"
               "  ssn-infer frames/ --workers 8 --out out/frames   "
               "# 8 processes\n"
               "  ssn-infer frames/ --dask --workers 4 --out out/frames\n"
               "  ssn-infer /shared/frames --scheduler tcp://head:8786 "
               "--out /shared/out\n")
    parser.add_argument("inputs", nargs="+",
                        help="image files, directories, glob patterns or .txt list files")
    options.add_out(parser)
    options.add_count(parser, 100)
    options.add_steps(parser, None)
    options.add_grid(parser)
    options.add_position_weight(parser)
    parser.add_argument("--weights", type=Path,
                        help="trained .caffemodel (default: the bundled model, if any)")
    options.add_features(parser)
    options.add_gpu(parser)
    parser.add_argument("--mask-dir", type=Path, metavar="DIR",
                        help="superpixels only inside each image's mask, DIR/<name>.png (or "
                             "another image format; <name> as the outputs'): nonzero pixels "
                             "are inside; labels are then 0 outside, 1..K inside, and "
                             "--n-segments counts over the mask. An image without a mask, or "
                             "with one of another size, fails alone (default: no masks)")
    parser.add_argument("--connectivity", action=argparse.BooleanOptionalAction, default=True,
                        help="enforce connected superpixels (default: on)")
    parser.add_argument("--min-size-factor", type=float, default=0.06,
                        help="merge segments below this x H*W/n pixels (default: 0.06)")
    parser.add_argument("--max-size-factor", type=float, default=3.0,
                        help="split segments above this x H*W/n pixels (default: 3.0)")
    parser.add_argument("--overwrite", action=argparse.BooleanOptionalAction, default=False,
                        help="recompute images whose results verify, and replace results "
                             "made with other settings (default: keep and refuse)")
    parser.add_argument("--fused", action=argparse.BooleanOptionalAction, default=True,
                        help="run the SLIC iterations as one SlicIterations layer; "
                             "--no-fused runs the decomposed layers (default: fused)")
    options.add_workers(parser)
    parser.add_argument("--dask", action=argparse.BooleanOptionalAction, default=False,
                        help="run on a Dask LocalCluster of --workers processes (needs "
                             "pip install 'ssn-caffe[dask]') (default: off)")
    parser.add_argument("--scheduler", metavar="ADDRESS",
                        help="run on the Dask cluster of this scheduler (tcp://host:8786); "
                             "its workers must see the inputs and --out at the same paths "
                             "(default: none)")
    return parser


# The exit status of each way a run can end (docstring above).
EXIT_OK, EXIT_FAILED_IMAGES, EXIT_RUN_ERROR = 0, 1, 2
EXIT_STOPPED = {"interrupted": 130, "terminated": 143}


def main(argv: Optional[list[str]] = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """ssn-infer with its parsed arguments: 0 every image done; 1 some images failed
    (reported, recorded, the rest done); 2 nothing or not everything could run (a bad
    option or --out, a full disk, a device this Caffe lacks), with one message saying
    why; 130 or 143 stopped by Ctrl-C or SIGTERM (finished images kept)."""
    # Imported here: worker processes re-import this module when they start, and must set
    # their thread count before anything imports Caffe.
    from ssn.infer.run import run_batch
    logging.getLogger("distributed").setLevel(logging.WARNING)  # Dask's own chatter
    try:
        result = run_batch(
            args.inputs, args.out, n_segments=args.n_segments, num_steps=args.num_steps,
            grid=args.grid, position_weight=args.position_weight, weights=args.weights,
            features=args.features, gpu=args.gpu, mask_dir=getattr(args, "mask_dir", None),
            connectivity=args.connectivity, min_size_factor=args.min_size_factor,
            max_size_factor=args.max_size_factor, overwrite=args.overwrite,
            fused=args.fused, workers=args.workers, threads=args.threads, dask=args.dask,
            scheduler=args.scheduler)
    except (ValueError, TypeError, OSError) as error:
        log.error("%s; nothing was done", error)
        return EXIT_RUN_ERROR
    if result.error is not None:
        return EXIT_RUN_ERROR
    if result.stopped is not None:
        return EXIT_STOPPED[result.stopped]
    return EXIT_FAILED_IMAGES if result.failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
