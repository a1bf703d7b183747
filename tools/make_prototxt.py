#!/usr/bin/env python
"""The ``ssn-make-prototxt`` command (ssn/cli/make_prototxt.py); see --help."""
import sys

from ssn.cli.make_prototxt import main

if __name__ == "__main__":
    sys.exit(main())
