#!/usr/bin/env python
"""The ``ssn-bench-train`` command (ssn/cli/bench_train.py); see --help."""
import sys

from ssn.cli.bench_train import main

if __name__ == "__main__":
    sys.exit(main())
