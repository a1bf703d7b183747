#!/usr/bin/env python
"""The ``ssn-demo`` command (ssn/cli/demo.py); see --help."""
import sys

from ssn.cli.demo import main

if __name__ == "__main__":
    sys.exit(main())
