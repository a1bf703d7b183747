"""The old name of :mod:`ssn.examples.gpu_runs`, where the code lives now.

Importing this name gives that same module; ``python -m ssn.training.gpu_runs``
still runs its command.
"""
import sys

import ssn.examples.gpu_runs

if __name__ == "__main__":
    ssn.examples.gpu_runs.main()
else:
    sys.modules[__name__] = ssn.examples.gpu_runs
