#!/usr/bin/env python
"""The ``ssn-bench-layers`` command (ssn/cli/bench_layers.py); see --help."""
import sys

from ssn.cli.bench_layers import main

if __name__ == "__main__":
    sys.exit(main())
