#!/usr/bin/env python
"""The ``ssn-eval-task`` command (ssn/cli/eval_task.py); see --help."""
import sys

from ssn.cli.eval_task import main

if __name__ == "__main__":
    sys.exit(main())
