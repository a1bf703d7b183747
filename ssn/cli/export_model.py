"""Turn a training snapshot into a shippable model: only the layers the deploy net
uses (the feature CNN), checked to be complete (used by tools/export_model.py).

The default output is the bundled model that tools/infer.py, tools/demo.py and
ssn.inference.superpixels use when no --weights are given.

The snapshot's metadata file (<snapshot>.json: the position weight and colour
scale it was trained at, and a calibration if one was measured) is copied to
<out>.json. Without one, the model runs with the defaults and the BSDS500
model's count calibration (with a warning) until ssn-bench-calibration
--write-metadata measures its own.
"""
from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Optional

from ssn.cli.command import command_parser, run_command
from ssn.model_metadata import find_settings, metadata_path
from ssn.nets.weights import export_deploy_weights

log = logging.getLogger("ssn.cli.export_model")


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-export-model",
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n"
               "  ssn-export-model models/bsds_cpu/ssn_iter_4000.caffemodel "
               "--out models/ssn_mine.caffemodel\n")
    parser.add_argument("snapshot", type=Path, help="a training snapshot (.caffemodel)")
    parser.add_argument("--out", type=Path, required=True,
                        help="where to write the model (replacing the shipped one is "
                             "--out ssn/models/ssn_bsds.caffemodel)")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    return run_command(run, build_parser(), argv)


def run(args: argparse.Namespace) -> int:
    """Write the deploy weights and their settings file."""
    carried = find_settings(metadata_path(args.snapshot))
    path = export_deploy_weights(args.snapshot, args.out)
    log.info("wrote %s (%.0f kB) from %s", path, path.stat().st_size / 1e3, args.snapshot)
    if carried is not None:
        log.info("wrote its settings to %s%s", metadata_path(path),
                 "" if carried.calibration else " (not calibrated: measure with "
                 "ssn-bench-calibration --weights " + str(path) + " --write-metadata)")
    elif metadata_path(path).exists():
        log.warning("%s has no metadata file, and %s (an older model's) is kept: its "
                    "settings now apply to the new weights; delete or rewrite it if they "
                    "do not", args.snapshot, metadata_path(path))
    else:
        log.warning("%s has no metadata file: the model runs with the defaults and the "
                    "BSDS500 model's count calibration", args.snapshot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
