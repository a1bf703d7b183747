"""Train an SSN from a solver prototxt with pycaffe.

Snapshots come from the solver's ``snapshot`` setting, with one more at the end,
and one when training stops on Ctrl-C, SIGTERM or an error. Each is written under
a temporary name and renamed. --resume checks the snapshot first and continues
the data sequence where the snapshot left it. Each iteration's losses go to a CSV
log. Exit status: 0 done or interrupted, 2 a bad argument, file or snapshot, 1
another error (after its snapshot).
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from ssn.cli import options
from ssn.nets.prototxt import PROTOTXT_DIR, SOLVER
from ssn.training.solver import train

log = logging.getLogger("ssn.cli.train")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  python tools/train.py                      # prototxt/ssn_solver.prototxt, CPU\n"
               "  python tools/train.py --max-iter 2000 --snapshot-prefix models/run1/ssn\n"
               "  python tools/train.py --resume models/run1/ssn_iter_1000.solverstate\n"
               "  python tools/train.py --weights models/ssn_init.caffemodel --gpu 0\n")
    parser.add_argument("--solver", type=Path, default=PROTOTXT_DIR / SOLVER,
                        help="solver prototxt (default: prototxt/ssn_solver.prototxt)")
    options.add_gpu(parser)
    start = parser.add_mutually_exclusive_group()
    start.add_argument("--weights", type=Path, help="initial .caffemodel (by layer name)")
    start.add_argument("--resume", type=Path, help=".solverstate to continue from")
    parser.add_argument("--max-iter", type=int, help="override the solver's max_iter")
    parser.add_argument("--snapshot-prefix", help="override the solver's snapshot_prefix")
    parser.add_argument("--log-csv", type=Path,
                        help="loss log (default: <snapshot_prefix>_loss.csv, appended)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    try:
        result = train(args.solver, args.gpu, args.weights, args.resume, args.max_iter,
                       args.snapshot_prefix, args.log_csv)
    except (ValueError, OSError, FloatingPointError) as error:
        log.error("%s", error)
        return 2
    except Exception:  # noqa: BLE001 - the snapshot is written; say why training stopped
        log.exception("training failed")
        return 1
    log.info("stopped at iteration %d, losses %s; log %s", result["iteration"],
             {k: round(v, 4) for k, v in result["losses"].items()}, result["log"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
