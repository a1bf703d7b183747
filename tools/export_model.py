#!/usr/bin/env python
"""Export a training snapshot as the shippable model (see ssn/export_model.py and --help)."""
import sys

from ssn.export_model import main

if __name__ == "__main__":
    sys.exit(main())
