#!/usr/bin/env python
"""Quality of training snapshots on BSDS500 val (see ssn/evaluate_snapshots.py and --help)."""
import sys

from ssn.evaluate_snapshots import main

if __name__ == "__main__":
    sys.exit(main())
