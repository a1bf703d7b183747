#!/usr/bin/env python
"""The ``ssn-bench-peers`` command (ssn/cli/bench_peers.py); see --help."""
import sys

from ssn.cli.bench_peers import main

if __name__ == "__main__":
    sys.exit(main())
