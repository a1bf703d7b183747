#!/usr/bin/env python
"""The ``ssn-target-regions`` command (ssn/cli/target_regions.py); see --help."""
import sys

from ssn.cli.target_regions import main

if __name__ == "__main__":
    sys.exit(main())
