"""Old home of the batch-inference engines, now :mod:`ssn.infer.engines` (the core
counts in :mod:`ssn.threads`): the names it had, re-exported so that existing imports
keep working."""
from __future__ import annotations

from ssn.infer.engines import (
    DASK_CONNECT_TIMEOUT_S,
    DASK_WORKER_WAIT_S,
    START_METHOD,
    STOP_WAIT_S,
    Tasks,
    run_dask,
    run_here,
    run_processes,
)
from ssn.infer.job import RunError
from ssn.threads import THREAD_VARIABLES, available_cores, threads_per_worker

__all__ = ["DASK_CONNECT_TIMEOUT_S", "DASK_WORKER_WAIT_S", "START_METHOD", "STOP_WAIT_S",
           "THREAD_VARIABLES", "RunError", "Tasks", "available_cores", "run_dask", "run_here",
           "run_processes", "threads_per_worker"]
