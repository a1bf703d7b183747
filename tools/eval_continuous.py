#!/usr/bin/env python
"""The ``ssn-eval-continuous`` command (ssn/cli/eval_continuous.py); see --help."""
import sys

from ssn.cli.eval_continuous import main

if __name__ == "__main__":
    sys.exit(main())
