#!/usr/bin/env python
"""The ``ssn-train`` command (ssn/cli/train.py); see --help."""
import sys

from ssn.cli.train import main

if __name__ == "__main__":
    sys.exit(main())
