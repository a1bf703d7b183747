"""Seconds and peak memory of :func:`ssn.inference.superpixels` against image size.

Each size and mode runs in a fresh Python process (so its peak resident memory,
VmHWM, is that one call's, the imports and the uint8 photo included). The photo
is scikit-image's astronaut, resized to the size (bilinear, with Pillow). A benchmark, not a test.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
from typing import Optional

# 0.15 MP (a BSDS500 image), 2, 12 and 24 MP (6000 x 4000), 3:2.
SIZES = {0.15: (321, 481), 2: (1200, 1600), 12: (2832, 4240), 24: (4000, 6000)}

CHILD = r'''
import json, resource, sys, time
import numpy as np
from PIL import Image
from skimage import data
from ssn.inference import superpixels
height, width, features, n_segments = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], \
    int(sys.argv[4])
image = np.asarray(Image.fromarray(data.astronaut()).resize((width, height), Image.BILINEAR))
start = time.perf_counter()
labels = superpixels(image, n_segments=n_segments, features=features)
seconds = time.perf_counter() - start
hwm = [int(line.split()[1]) * 1024 for line in open("/proc/self/status")
       if line.startswith("VmHWM:")]
print(json.dumps(dict(seconds=seconds, peak=hwm[0] if hwm else
                      resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
                      count=int(labels.max()) + 1)))
'''


def measure(height: int, width: int, features: str, n_segments: int,
            timeout: Optional[float] = None) -> dict:
    """seconds (the superpixels call), peak (bytes of the process) and count of one run in a
    fresh process; ``error`` instead if it failed."""
    run = subprocess.run([sys.executable, "-c", CHILD, str(height), str(width), features,
                          str(n_segments)], capture_output=True, text=True, timeout=timeout)
    if run.returncode != 0:
        return dict(error=(run.stderr.strip().splitlines() or [f"exit {run.returncode}"])[-1])
    return json.loads(run.stdout.strip().splitlines()[-1])


def table_row(megapixels: float, height: int, width: int, features: str, result: dict) -> str:
    size = f"{megapixels:g} MP ({width}x{height})"
    if "error" in result:
        return f"| {size} | {features} | failed: {result['error']} | | |"
    return (f"| {size} | {features} | {result['seconds']:.1f} | "
            f"{result['peak'] / 2**30:.2f} | {result['count']} |")


def megapixel_size(megapixels: float) -> tuple[int, int]:
    """(height, width) of a 3:2 image of about ``megapixels``, in SIZES or made up."""
    if megapixels in SIZES:
        return SIZES[megapixels]
    height = int(round(math.sqrt(megapixels * 1e6 / 1.5)))
    return height, int(round(1.5 * height))
