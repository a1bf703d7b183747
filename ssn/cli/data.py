"""Get the data sets the tools read: ``ssn-data fetch bsds500 [--to DIR]``.

Downloads the official BSDS500 archive, verifies it and unpacks it into the
layout the tools read (images/ and groundTruth/ with train, val and test).
Resumable and idempotent: run it again after an interruption.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Optional

from ssn.bsds import DEFAULT_DATA_ROOT
from ssn.cli.command import command_parser, run_command
from ssn.download import BSDS500_DIGEST, BSDS500_URL, FetchError, fetch_bsds500


def build_parser() -> argparse.ArgumentParser:
    parser = command_parser(
        "ssn-data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  ssn-data fetch bsds500                 # into ./data/BSDS500\n"
               "  ssn-data fetch bsds500 --to /data/BSDS500 && "
               "export SSN_DATA_ROOT=/data/BSDS500\n")
    commands = parser.add_subparsers(dest="command", required=True)
    fetch = commands.add_parser("fetch", help="download, verify and unpack a data set")
    fetch.add_argument("dataset", choices=["bsds500"], help="the data set")
    fetch.add_argument("--to", type=Path, default=DEFAULT_DATA_ROOT,
                       help=f"target folder (default: {DEFAULT_DATA_ROOT})")
    fetch.add_argument("--url", default=BSDS500_URL,
                       help="where to download from (http(s):// or file://)")
    fetch.add_argument("--digest", default=BSDS500_DIGEST,
                       help="content digest the train/val files must have (default: pinned)")
    fetch.add_argument("--sha256", help="also require the archive to have this sha256")
    return parser


def main(argv: Optional[list[str]] = None) -> int:
    return run_command(run, build_parser(), argv, input_errors=(FetchError,))


def run(args: argparse.Namespace) -> int:
    """Fetch the data set; a failed or broken download exits 2."""
    fetch_bsds500(args.to, args.url, args.digest, args.sha256)
    return 0


if __name__ == "__main__":
    sys.exit(main())
