#!/usr/bin/env python
"""The ``ssn-export-hdf5`` command (ssn/cli/export_hdf5.py); see --help."""
import sys

from ssn.cli.export_hdf5 import main

if __name__ == "__main__":
    sys.exit(main())
