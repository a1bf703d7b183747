"""SSN against the fastest classical superpixels, timed side by side in one process.

Each round times every (method, count) once, in a shuffled order, so that
drifting machine load touches all methods alike; each figure is the median over
rounds, and the ratio is to scikit-image SLIC's median at the same count.
"""
from __future__ import annotations

import random
import statistics
import time
from typing import Callable, Optional

import numpy as np

from ssn.evaluation.baselines import BaselineMissing, baseline
from ssn.inference import superpixels

PEERS = ("fast-slic", "opencv-seeds", "opencv-slico", "opencv-lsc", "slic")


def methods(num_steps: int, weights: Optional[str]) -> tuple[dict[str, Callable], list[str]]:
    """(name -> function(rgb, n) -> labels, names skipped because not installed)."""
    found, skipped = {}, []
    for name in PEERS:
        try:
            found[name] = baseline(name)
        except BaselineMissing:
            skipped.append(name)
    found["ssn pixel"] = lambda rgb, n: superpixels(rgb, n, num_steps=num_steps, features="pixel")
    found["ssn deep"] = lambda rgb, n: superpixels(rgb, n, num_steps=num_steps, weights=weights,
                                                   features="deep")
    return found, skipped


def time_rounds(functions: dict[str, Callable], rgb: np.ndarray, counts: list[int],
                rounds: int, seed: int = 0) -> dict[tuple[str, int], dict]:
    """(method, n) -> {"seconds": median, "actual": superpixel count}; one warm-up call each."""
    cases = [(name, count) for name in functions for count in counts]
    actual = {case: int(functions[case[0]](rgb, case[1]).max()) + 1 for case in cases}
    times: dict[tuple[str, int], list[float]] = {case: [] for case in cases}
    order = random.Random(seed)
    for _ in range(rounds):
        order.shuffle(cases)
        for name, count in cases:
            start = time.perf_counter()
            functions[name](rgb, count)
            times[(name, count)].append(time.perf_counter() - start)
    return {case: {"seconds": statistics.median(values), "actual": actual[case]}
            for case, values in times.items()}
