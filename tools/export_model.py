#!/usr/bin/env python
"""The ``ssn-export-model`` command (ssn/cli/export_model.py); see --help."""
import sys

from ssn.cli.export_model import main

if __name__ == "__main__":
    sys.exit(main())
