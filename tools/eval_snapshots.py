#!/usr/bin/env python
"""The ``ssn-eval-snapshots`` command (ssn/cli/eval_snapshots.py); see --help."""
import sys

from ssn.cli.eval_snapshots import main

if __name__ == "__main__":
    sys.exit(main())
