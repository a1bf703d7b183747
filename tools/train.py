#!/usr/bin/env python
"""Train an SSN on BSDS500 from a solver prototxt (see ssn/train.py and --help)."""
import sys

from ssn.train import main

if __name__ == "__main__":
    sys.exit(main())
