"""The ``ssn-eval-task`` command: its flags; the work and its description are in
:mod:`ssn.examples.downstream.evaluation`.

Writes ``images.csv`` (per image: accuracy, own_lightness) and ``summary.json``
(the means, their standard errors and the settings) to --out.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path
from typing import Optional

import ssn.examples.downstream.evaluation as task_module
from ssn.atomic import write_atomic
from ssn.bsds import read_split
from ssn.cli import options
from ssn.cli.command import command_parser, run_command
from ssn.device import use_device
from ssn.evaluation.runs import write_csv
from ssn.examples.downstream.evaluation import TaskPredictor, evaluate, standard_error
from ssn.examples.downstream.net import DownstreamOptions

log = logging.getLogger("ssn.cli.eval_task")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-eval-task",
        description=task_module.__doc__ + "\n" + __doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  ssn-eval-task models/downstream/ssn_task_iter_200.caffemodel "
               "--out out/task\n"
               "  ssn-eval-task models/pixel/ssn_task_iter_200.caffemodel "
               "--no-spixel-pooling --limit 20 --out out/task_pixel\n")
    parser.add_argument("weights", type=Path, help="a snapshot of the downstream TRAIN net")
    options.add_out(parser)
    defaults = DownstreamOptions()
    parser.add_argument("--spixel-pooling", action=argparse.BooleanOptionalAction,
                        default=defaults.spixel_pooling,
                        help="the model pools over superpixels; --no-spixel-pooling: a head "
                             f"per pixel, as trained (default: {defaults.spixel_pooling})")
    parser.add_argument("--num-classes", type=options.positive_int,
                        default=defaults.num_classes,
                        help=f"task classes, as trained (default: {defaults.num_classes})")
    parser.add_argument("--patch", type=options.positive_int, default=defaults.patch,
                        help=f"training patch size (default: {defaults.patch})")
    parser.add_argument("--train-n-segments", type=options.positive_int,
                        default=defaults.n_spixels,
                        help="superpixels per training patch; the images get cells of the "
                             f"same size (default: {defaults.n_spixels})")
    options.add_count(parser, None, help="superpixels per image instead (default: cells of "
                                         "the training cells' size)")
    options.add_steps(parser, defaults.deploy_num_steps)
    options.add_limit(parser)
    options.add_split(parser)
    options.add_data_root(parser)
    options.add_gpu(parser)
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """Evaluate the task model on the split and write its scores."""
    settings = DownstreamOptions(spixel_pooling=args.spixel_pooling, patch=args.patch,
                                 num_classes=args.num_classes, n_spixels=args.train_n_segments,
                                 deploy_num_steps=args.num_steps)
    use_device(args.gpu)
    if not args.weights.is_file():
        raise FileNotFoundError(f"weights not found: {args.weights}")
    ids = read_split(args.split, args.data_root)[:args.limit]
    result = evaluate(TaskPredictor(settings, args.weights, args.n_segments), ids,
                      args.split, args.data_root)
    args.out.mkdir(parents=True, exist_ok=True)
    write_csv(args.out / "images.csv", result["images"])
    summary = {key: result[key] for key in ("accuracy", "own_lightness")}
    for key in ("accuracy", "own_lightness"):
        summary[f"{key}_stderr"] = standard_error([row[key] for row in result["images"]])
    summary.update(images=len(ids), weights=str(args.weights), split=args.split,
                   n_segments=args.n_segments, options=dataclasses.asdict(settings))
    write_atomic(args.out / "summary.json", json.dumps(summary, indent=2) + "\n")
    log.info("accuracy %.4f +- %.4f, own lightness %.4f, over %d images; wrote %s",
             summary["accuracy"], summary["accuracy_stderr"], summary["own_lightness"],
             len(ids), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
