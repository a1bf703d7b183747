#!/usr/bin/env python
"""Export SSN training data to HDF5 (see ssn/hdf5_export.py and --help)."""
import sys

from ssn.hdf5_export import main

if __name__ == "__main__":
    sys.exit(main())
