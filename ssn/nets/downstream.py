"""The old name of :mod:`ssn.examples.downstream.net`, where the code lives now.

Importing this name gives that same module (so saved prototxts, pickles and
scripts that name it keep working).
"""
import sys

import ssn.examples.downstream.net

sys.modules[__name__] = ssn.examples.downstream.net
