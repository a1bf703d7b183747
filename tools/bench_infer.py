#!/usr/bin/env python
"""Time SSN inference per image on CPU next to SLIC (see ssn/benchmark_infer.py)."""
import sys

from ssn.benchmark_infer import main

if __name__ == "__main__":
    sys.exit(main())
