#!/usr/bin/env python
"""The ``ssn-synthflow`` command (ssn/cli/synthflow.py); see --help."""
import sys

from ssn.cli.synthflow import main

if __name__ == "__main__":
    sys.exit(main())
