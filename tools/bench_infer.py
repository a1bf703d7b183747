#!/usr/bin/env python
"""The ``ssn-bench-infer`` command (ssn/cli/bench_infer.py); see --help."""
import sys

from ssn.cli.bench_infer import main

if __name__ == "__main__":
    sys.exit(main())
