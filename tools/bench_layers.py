#!/usr/bin/env python
"""Time one SSN iteration and each SSN layer on CPU (see ssn/benchmark.py)."""
import sys

from ssn.benchmark import main

if __name__ == "__main__":
    sys.exit(main())
