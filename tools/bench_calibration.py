#!/usr/bin/env python
"""The ``ssn-bench-calibration`` command (ssn/cli/bench_calibration.py); see --help."""
import sys

from ssn.cli.bench_calibration import main

if __name__ == "__main__":
    sys.exit(main())
