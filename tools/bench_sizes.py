#!/usr/bin/env python
"""The ``ssn-bench-sizes`` command (ssn/cli/bench_sizes.py); see --help."""
import sys

from ssn.cli.bench_sizes import main

if __name__ == "__main__":
    sys.exit(main())
