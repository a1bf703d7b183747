#!/usr/bin/env python
"""The ``ssn-infer`` command (ssn/cli/infer.py); see --help."""
import sys

from ssn.cli.infer import main

if __name__ == "__main__":
    sys.exit(main())
