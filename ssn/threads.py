"""How many cores and threads this process may use; nothing here imports Caffe.

Worker processes read these before Caffe loads: OpenMP and BLAS take their
thread counts from :data:`THREAD_VARIABLES` when they start.
"""
from __future__ import annotations

import contextlib
import os
from functools import lru_cache
from typing import ContextManager, Optional

from threadpoolctl import ThreadpoolController

# Read by OpenMP, OpenBLAS and MKL when they load.
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def available_cores() -> int:
    """The cores this process may use (its CPU affinity, else the machine's count)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def threads_per_worker(workers: int, threads: Optional[int] = None) -> int:
    """``threads`` if given, else the cores shared evenly among ``workers`` (at least 1)."""
    return threads or max(1, available_cores() // max(1, workers))


def set_thread_variables(threads: int) -> None:
    """Set :data:`THREAD_VARIABLES` to ``threads``: takes effect in libraries loaded later
    (in this process, or in processes it starts)."""
    for name in THREAD_VARIABLES:
        os.environ[name] = str(threads)


@lru_cache(maxsize=1)
def _thread_controller() -> ThreadpoolController:
    return ThreadpoolController()  # scans the libraries loaded by now: once


def limit_threads(threads: Optional[int]) -> ContextManager:
    """A context in which the loaded OpenMP and BLAS libraries use ``threads`` threads
    (None or 0: as they are)."""
    if not threads:
        return contextlib.nullcontext()
    return _thread_controller().limit(limits=threads)
