#!/usr/bin/env python
"""Compute SSN superpixels for many images (see ssn/infer_cli.py and --help)."""
import sys

from ssn.infer_cli import main

if __name__ == "__main__":
    sys.exit(main())
