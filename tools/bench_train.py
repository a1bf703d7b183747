#!/usr/bin/env python
"""Time one SSN training iteration on CPU (see ssn/benchmark_train.py)."""
import sys

from ssn.benchmark_train import main

if __name__ == "__main__":
    sys.exit(main())
