#!/usr/bin/env python
"""Evaluate superpixels on BSDS500 next to SLIC (see ssn/evaluate.py and --help)."""
import sys

from ssn.evaluate import main

if __name__ == "__main__":
    sys.exit(main())
