#!/usr/bin/env python
"""The ``ssn-data`` command (ssn/cli/data.py); see --help."""
import sys

from ssn.cli.data import main

if __name__ == "__main__":
    sys.exit(main())
