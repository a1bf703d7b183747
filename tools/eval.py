#!/usr/bin/env python
"""The ``ssn-eval`` command (ssn/cli/eval.py); see --help."""
import sys

from ssn.cli.eval import main

if __name__ == "__main__":
    sys.exit(main())
