"""The ``ssn-eval-continuous`` command: its flags; the metric is described in
:mod:`ssn.evaluation.continuous`."""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

import numpy as np

import ssn.evaluation.continuous as continuous
from ssn.atomic import atomic_path, ensure_writable_folder
from ssn.cli import options
from ssn.cli.command import command_parser, run_command
from ssn.device import use_device
from ssn.evaluation.baselines import LABELLERS
from ssn.evaluation.runs import (
    baseline_runs,
    exit_status,
    score_into,
    ssn_run,
    write_results,
)

log = logging.getLogger("ssn.cli.eval_continuous")
MATCHED = (100, 200, 300, 400, 600)


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-eval-continuous",
        description=continuous.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  ssn-eval-continuous --dataset out/synthflow/val --n-segments 100 200 400 "
               "--out out/flow_eval\n"
               "  ssn-eval-continuous --dataset out/synthflow/val --limit 30 \\\n"
               "      --model flow=ssn/models/ssn_synthflow.caffemodel --model "
               "bsds=ssn/models/ssn_bsds.caffemodel \\\n"
               "      --methods ssn fast-slic slic --features pixel --n-segments 150 300 600 "
               "--pictures 3 --out out/flow_eval\n")
    parser.add_argument("--dataset", type=Path, required=True,
                        help="folder (images/, targets/) or list file of continuous pairs")
    options.add_out(parser)
    options.add_limit(parser, what="pairs")
    options.add_count(parser, [100, 200, 400], many=True, help="requested counts")
    parser.add_argument("--methods", nargs="+", choices=["ssn", *LABELLERS],
                        default=["ssn", "slic"], help="methods to run (default: ssn slic)")
    options.add_compactness(parser)
    parser.add_argument("--model", action="append", default=[], metavar="NAME=CAFFEMODEL",
                        help="an SSN model to run as SSN-NAME (deep features), repeatable")
    options.add_features(parser, nargs="*", help="SSN runs with the bundled model (deep) "
                         "and/or SSN_pix (pixel) (default: deep unless --model is given)")
    parser.add_argument("--matched-counts", type=int, nargs="+", default=list(MATCHED),
                        metavar="N", help="actual counts at which methods are compared "
                        "(default: %(default)s)")
    parser.add_argument("--pictures", type=int, default=0, metavar="N",
                        help="write a comparison picture for each of the first N pairs")
    parser.add_argument("--picture-count", type=int, default=200, metavar="N",
                        help="requested count of the pictures (default: %(default)s)")
    options.add_steps(parser)
    options.add_grid(parser)
    options.add_position_weight(parser)
    options.add_gpu(parser)
    return parser


def named_models(specs: list[str]) -> list[tuple[str, Path]]:
    models = []
    for spec in specs:
        name, _, path = spec.partition("=")
        if not name or not path:
            raise ValueError(f"--model wants NAME=CAFFEMODEL, got {spec!r}")
        if not Path(path).is_file():
            raise FileNotFoundError(f"--model {name}: no such file {path}")
        models.append((name, Path(path)))
    return models


def runs_for(args: argparse.Namespace, counts: list[int]) -> list:
    """Every (method, requested count, labeller) the flags ask for, at ``counts``."""
    runs, missing = [], set()
    compactness = options.compactness_values(args.compactness)
    models = named_models(args.model)
    features = args.features if args.features is not None else ([] if models else ["deep"])
    for count in counts:
        if "ssn" in args.methods:
            for name, weights in models:
                runs.append(ssn_run(count, "deep", args.num_steps, weights, args.grid,
                                    args.position_weight, label=name))
            runs += [ssn_run(count, mode, args.num_steps, None, args.grid, args.position_weight)
                     for mode in features]
        runs += baseline_runs(args.methods, count, compactness, missing)
    if not runs:
        raise ValueError("nothing to evaluate: no method runs")
    return runs


def write_picture(stem: str, rgb: np.ndarray, target: np.ndarray, labelled: list,
                  path: Path) -> None:
    """Image, target, then each method's per-superpixel mean target with its boundaries
    and error (``labelled``: (method, labels) pairs)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scale = float(np.percentile(np.linalg.norm(np.atleast_3d(target), axis=-1), 99))
    panels = [("image", rgb), ("target", continuous.target_picture(target, scale))]
    for method, labels in labelled:
        error = continuous.reconstruction_error(labels, target)
        panels.append((f"{method}: {len(np.unique(labels))} sp, error {error:.3f}",
                       continuous.reconstruction_picture(labels, target, scale)))
    columns = min(4, len(panels))
    rows = -(-len(panels) // columns)
    height, width = rgb.shape[:2]
    figure, axes = plt.subplots(rows, columns, squeeze=False,
                                figsize=(3.2 * columns, 3.2 * rows * height / width + 0.3))
    try:
        for axis in axes.flat:
            axis.axis("off")
        for axis, (title, picture) in zip(axes.flat, panels):
            axis.imshow(picture)
            axis.set_title(title, fontsize=7)
        figure.suptitle(stem, fontsize=8)
        figure.tight_layout()
        with atomic_path(path) as tmp:
            figure.savefig(tmp, dpi=80, format="png")
    finally:
        plt.close(figure)


def write_pictures(args: argparse.Namespace, samples: list) -> None:
    runs = runs_for(args, [args.picture_count])
    for stem, loader in samples[:args.pictures]:
        rgb, target = continuous.load_pair(loader)
        labelled = [(name, labels(stem, rgb)) for name, _, labels in runs]
        write_picture(stem, rgb, target, labelled, args.out / "pictures" / f"{stem}.png")
        log.info("wrote %s", args.out / "pictures" / f"{stem}.png")


def main(argv: Optional[list[str]] = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """Score the runs on the pairs; 1 when nothing could be scored."""
    use_device(args.gpu)
    runs = runs_for(args, args.n_segments)
    ensure_writable_folder(args.out, "output folder (--out)")
    samples = continuous.pair_samples(args.dataset, args.limit)
    rows, skipped = score_into(args.out, runs, samples, load=continuous.load_pair,
                               score=continuous.score)
    if not rows:
        return 1
    summary, _ = write_results(rows, args.out, args.matched_counts, continuous.METRICS,
                               continuous.METRICS, continuous.METRICS)
    table = (args.out / "matched.md").read_text()
    for entry in summary:
        log.info("%-16s n=%-5d actual %7.1f  error %.4f", entry["method"], entry["requested"],
                 entry["n_spixels"], entry["reconstruction_error"])
    log.info("reconstruction error at matched actual counts (matched.csv):\n%s", table)
    if args.pictures:
        write_pictures(args, samples)
    return exit_status(skipped, args.out)


if __name__ == "__main__":
    sys.exit(main())
