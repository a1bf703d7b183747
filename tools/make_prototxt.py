#!/usr/bin/env python
"""Write the SSN prototxt files and initial weights (see ssn/prototxt.py and --help)."""
import sys

from ssn.prototxt import main

if __name__ == "__main__":
    sys.exit(main())
