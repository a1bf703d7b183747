"""Where the per-image tasks of a batch run run: this process, worker processes, or Dask.

Each engine runs a task function (:attr:`Tasks.run`; :func:`ssn.infer.task.process`
for ``ssn-infer``) once per item and yields the summary rows as the tasks finish;
a :class:`RunError` from any task ends the run (the engine stops what is pending).
The tasks read the images and write the results themselves, so the caller only
counts rows. The engines know nothing of what a task does: the caller hands them
its functions (module-level, so that they pickle).

- :func:`run_here`: one task after another in this process.
- :func:`run_processes`: N worker processes started with 'spawn' (Caffe and
  OpenMP do not survive a fork after use), fed from one queue; each builds its
  own nets (per geometry, as :mod:`ssn.inference` caches them) and uses its own
  number of OpenMP/BLAS threads. Workers die with the parent (Linux's parent-death
  signal), even when it is killed; an interrupted parent stops them at once.
- :func:`run_dask`: a Dask cluster (a scheduler address, or a ``LocalCluster``):
  Dask schedules, and reruns the tasks of a worker that is lost.

This module imports no Caffe: a worker process loads it, sets its thread count,
and only then imports Caffe (when it unpickles its first task, whose module
imports it).
"""
from __future__ import annotations

import contextlib
import ctypes
import logging
import multiprocessing
import os
import signal
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Optional

from ssn.infer.job import RunError
from ssn.threads import THREAD_VARIABLES, set_thread_variables


class Tasks(NamedTuple):
    """What an engine runs, as module-level functions (they are pickled to workers).

    Attributes
    ----------
    run : callable (job, item) -> dict
        One item's task; returns its summary row, raises :class:`RunError` to stop
        the run.
    check : callable (job) -> None
        Run once on each Dask worker before any task: raises :class:`RunError` if
        the worker cannot run the job (its device, the output folder, the weights).
    lost : callable (job, item, reason) -> dict
        The summary row of an item whose workers died repeatedly (Dask).
    """

    run: Callable[[Any, Any], dict]
    check: Callable[[Any], None]
    lost: Callable[[Any, Any, str], dict]


START_METHOD = "spawn"
# How long a Dask client waits for a scheduler and for its first worker.
DASK_CONNECT_TIMEOUT_S = 30
DASK_WORKER_WAIT_S = 120


def _start_worker(threads: Optional[int], parent: Optional[int] = None) -> None:
    """Runs first in each worker process: sets the thread count (OpenMP and BLAS read
    these when they load) and, given the parent's pid, ties the worker to it: it gets
    SIGTERM when the parent dies (killed too) and leaves Ctrl-C to the parent."""
    if threads:
        set_thread_variables(threads)
    if parent is not None:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, _stop_worker)
        _die_with_parent(parent)


PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# How long stopped workers get to clean up (remove their temporary files) before a SIGKILL.
STOP_WAIT_S = 5


def _die_with_parent(parent: int) -> None:
    """Ask Linux for SIGTERM when the parent process dies; exit now if it already has."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    except (OSError, AttributeError):  # not Linux: the pipes' end stops the workers
        pass
    if os.getppid() != parent:  # it died before prctl
        os._exit(1)


def _stop_worker(signum, frame) -> None:
    """SIGTERM in a worker: unwind (removing temporary files), then exit; exit anyway
    after :data:`STOP_WAIT_S` if the SystemExit is swallowed (raised in a finaliser)."""
    watchdog = threading.Timer(STOP_WAIT_S, os._exit, (128 + signum,))
    watchdog.daemon = True
    watchdog.start()
    raise SystemExit(128 + signum)


def _worker_task(task: Callable[[Any, Any], dict], job, item) -> dict:
    """``task(job, item)`` in a worker process; a SIGTERM during it ends the process (the
    pool would send the SystemExit back as the task's exception and wait for more)."""
    try:
        return task(job, item)
    except SystemExit as stop:
        os._exit(stop.code if isinstance(stop.code, int) else 1)


def _stop_workers(pool: ProcessPoolExecutor) -> None:
    """Terminate the pool's worker processes at once; SIGKILL any that have not exited
    within :data:`STOP_WAIT_S`."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # no public list
    for process in processes:
        with contextlib.suppress(OSError, ValueError):
            process.terminate()
    deadline = time.monotonic() + STOP_WAIT_S
    for process in processes:
        with contextlib.suppress(OSError, ValueError):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1)


def run_here(tasks: Tasks, job, items: Iterable) -> Iterator[dict]:
    """Run the tasks one after another in this process."""
    for item in items:
        yield tasks.run(job, item)


def run_processes(tasks: Tasks, job, items: Iterable, workers: int) -> Iterator[dict]:
    """Run the tasks in ``workers`` spawned processes that share one queue.

    At most two tasks per worker are queued at a time, so any number of images
    takes little memory here.

    Raises
    ------
    RunError
        From a task, or when a worker process dies (killed, out of memory).
    """
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context(START_METHOD),
                               initializer=_start_worker, initargs=(job.threads, os.getpid()))
    queue = iter(items)
    pending = {}

    def fill() -> None:
        while len(pending) < 2 * workers:
            item = next(queue, None)
            if item is None:
                return
            pending[pool.submit(_worker_task, tasks.run, job, item)] = item

    try:
        fill()
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                item = pending.pop(future)
                try:
                    row = future.result()
                except BrokenProcessPool as error:
                    raise RunError(f"a worker process died (killed, or out of memory?) while "
                                   f"on {item.image}; finished images are kept: rerun to "
                                   "complete the rest") from error
                yield row
            fill()
    except (KeyboardInterrupt, GeneratorExit):  # Ctrl-C, SIGTERM, or the caller stopped
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _check_worker(check: Callable[[Any], None], job) -> Optional[str]:
    """On a Dask worker: why it cannot run this job's tasks, or None."""
    try:
        check(job)
    except RunError as error:
        return str(error)
    return None


def run_dask(tasks: Tasks, job, items: Iterable, scheduler: Optional[str] = None,
             workers: int = 2) -> Iterator[dict]:
    """Run the tasks on a Dask cluster: the scheduler at ``scheduler``, or a
    ``LocalCluster`` of ``workers`` processes with one task thread each.

    Every worker must see the images and ``job.out`` at the same paths. Each
    worker process builds its nets once and keeps them. A worker lost mid-task
    is replaced and its tasks rerun by Dask; an image that kills workers
    repeatedly (Dask's ``allowed-failures``) is recorded as failed.

    Raises
    ------
    RunError
        Dask is not installed, the scheduler cannot be reached or has no workers,
        a worker cannot run the job (device, folder, weights), or a task raised it.
    """
    try:
        from distributed import Client, LocalCluster, as_completed
        from distributed.scheduler import KilledWorker
    except ImportError as error:
        raise RunError("--dask and --scheduler need Dask: pip install 'ssn-caffe[dask]' "
                       "(that is, dask[distributed])") from error
    with contextlib.ExitStack() as stack:
        if scheduler is None:
            threads = job.threads or 1
            cluster = stack.enter_context(LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, host="127.0.0.1",
                dashboard_address="127.0.0.1:0", memory_limit=0,
                silence_logs=logging.WARNING,
                env={name: str(threads) for name in THREAD_VARIABLES}))
            client = stack.enter_context(Client(cluster))
        else:
            try:
                client = stack.enter_context(Client(scheduler,
                                                    timeout=DASK_CONNECT_TIMEOUT_S))
            except (OSError, TimeoutError) as error:
                raise RunError(f"cannot reach the Dask scheduler at {scheduler}: "
                               f"{error}") from error
            try:
                client.wait_for_workers(1, timeout=DASK_WORKER_WAIT_S)
            except TimeoutError as error:
                raise RunError(f"no Dask worker joined the scheduler at {scheduler} within "
                               f"{DASK_WORKER_WAIT_S} s: start some with `dask worker "
                               f"{scheduler}`") from error
        problems = [p for p in client.run(_check_worker, tasks.check, job).values() if p]
        if problems:
            raise RunError("; ".join(sorted(set(problems))))
        window = max(64, 4 * sum(client.nthreads().values()))
        queue = iter(items)
        futures = as_completed()
        pending = {}

        def submit_next() -> None:
            item = next(queue, None)
            if item is not None:
                future = client.submit(tasks.run, job, item, pure=False)
                pending[future.key] = item
                futures.add(future)

        for _ in range(window):
            submit_next()
        for future in futures:
            item = pending.pop(future.key)
            try:
                row = future.result()
            except KilledWorker:
                row = tasks.lost(job, item, "the workers running it died repeatedly "
                                 "(out of memory?)")
            finally:
                future.release()
            submit_next()
            yield row
