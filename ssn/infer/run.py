"""A batch run from start to end: :func:`run_batch`.

Before any work it checks the settings against the model, expands the inputs,
checks the output folder, and refuses results made with other settings (unless
``overwrite``). Then an engine of :mod:`ssn.infer.engines` runs
:func:`ssn.infer.task.process` on each image, and the summary is rebuilt from
the records on disk, also after an interruption or an error of the run.
"""
from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Optional, Sequence, Union

from tqdm import tqdm

from ssn.device import use_device
from ssn.infer import engines
from ssn.infer.inputs import assign_names, expand_inputs, is_output, printable, resolved
from ssn.infer.job import Item, Job, RunError
from ssn.infer.outputs import (
    check_out,
    conflicts,
    remove_stale_temporaries,
    write_config,
    write_summary,
)
from ssn.infer.records import output_paths, record_path
from ssn.infer.task import TASKS, make_settings
from ssn.threads import available_cores, threads_per_worker

log = logging.getLogger("ssn.infer")


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread so that a run stops as on Ctrl-C."""


@contextlib.contextmanager
def sigterm_stops_the_run() -> Iterator[None]:
    """A context in which SIGTERM raises :class:`Terminated` (once; a second is ignored
    while the run stops). Only the main thread can set a handler: elsewhere it does
    nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@dataclass
class BatchResult:
    """How a batch run ended.

    Attributes
    ----------
    out : Path
        The output folder (absolute).
    computed, verified, failed : int
        Images segmented now; kept because their results verified; failed (their
        record, or their summary row, says why; inputs that could not be read count).
    seconds : float
        Time spent on the images.
    rows : list of dict
        summary.csv's rows, as written at the end (empty if it was not).
    error : str or None
        Why the run could not start or stopped before the end (no images, the output
        folder, a full disk, a worker lost, a device); None if it ran to the end.
    stopped : str or None
        'interrupted' (Ctrl-C) or 'terminated' (SIGTERM); finished images are kept.
    """

    out: Path
    computed: int = 0
    verified: int = 0
    failed: int = 0
    seconds: float = 0.0
    rows: list[dict] = field(default_factory=list)
    error: Optional[str] = None
    stopped: Optional[str] = None

    @property
    def complete(self) -> bool:
        """Every image is done: nothing failed, stopped or went wrong."""
        return self.error is None and self.stopped is None and self.failed == 0


def run_batch(inputs: Union[str, Path, Sequence[Union[str, Path]]], out: Union[str, Path], *,
              n_segments: int = 100, num_steps: Optional[int] = None,
              grid: str = "calibrated", position_weight: Optional[float] = None,
              weights: Optional[Union[str, Path]] = None, features: Optional[str] = None,
              gpu: int = -1, mask_dir: Optional[Union[str, Path]] = None,
              connectivity: bool = True, min_size_factor: float = 0.06,
              max_size_factor: float = 3.0, overwrite: bool = False, fused: bool = True,
              workers: Optional[int] = None, threads: Optional[int] = None,
              dask: bool = False, scheduler: Optional[str] = None) -> BatchResult:
    """Superpixels for every image of ``inputs``, written to ``out`` (see
    :mod:`ssn.infer.records` for the folder's layout); images whose results verify
    are kept unless ``overwrite``.

    Parameters
    ----------
    inputs : str, Path, or a sequence of them
        Image files, folders (their images), glob patterns, .txt lists (one path a line).
    out : str or Path
        The output folder; with other settings' results in it, the run is refused
        unless ``overwrite``.
    n_segments, num_steps, grid, position_weight, weights, features, connectivity,
    min_size_factor, max_size_factor, fused
        As for :func:`ssn.inference.superpixels` (None: the model's).
    gpu : int
        GPU id, -1 for the CPU.
    mask_dir : str or Path, optional
        Superpixels only inside each image's mask, ``mask_dir/<name>.png``.
    workers : int, optional
        Processes (default: the cores), or Dask workers with ``dask``.
    threads : int, optional
        OpenMP/BLAS threads per worker (default: the cores shared among them).
    dask, scheduler
        Run on a Dask ``LocalCluster`` of ``workers``, or on the cluster of this
        scheduler address.

    Returns
    -------
    BatchResult
        Its ``error`` says why the run could not start or stopped; SIGTERM in the
        main thread, or Ctrl-C, stop it with ``stopped`` set. Each problem is
        logged (logger ``ssn.infer``) as it happens.

    Raises
    ------
    ValueError, TypeError, OSError
        An option that can never work (checked before any work): a count below 1,
        bad size factors, missing or unfitting weights, a device this Caffe lacks,
        a ``mask_dir`` that is not a folder.
    """
    if isinstance(inputs, (str, Path)):
        inputs = [inputs]
    out = Path(out).absolute()
    options = dict(inputs=[os.fspath(item) for item in inputs], out=out,
                   n_segments=n_segments, num_steps=num_steps,
                   grid=grid, position_weight=position_weight, weights=weights,
                   features=features, gpu=gpu, mask_dir=mask_dir, connectivity=connectivity,
                   min_size_factor=min_size_factor, max_size_factor=max_size_factor,
                   overwrite=overwrite, fused=fused, workers=workers, threads=threads,
                   dask=dask, scheduler=scheduler)
    if not scheduler:  # a cluster's workers check their own device
        use_device(gpu)
    settings, weights_path = make_settings(
        n_segments, num_steps, features, Path(weights) if weights else None, connectivity,
        min_size_factor, max_size_factor, grid, fused, position_weight,
        Path(mask_dir) if mask_dir else None)
    result = BatchResult(out)
    items, unrecorded = _items(options["inputs"], out, result)
    if not items:
        return result
    try:
        check_out(out)
    except RunError as error:
        return _stop(result, str(error))
    remove_stale_temporaries(out, time.time())
    found = [] if overwrite else conflicts(out, items, settings)
    if found:
        return _stop(result, f"{out} holds results this run would replace: "
                             f"{'; '.join(found)}. Choose another --out, or add --overwrite "
                             "to recompute them with these settings")
    workers = options["workers"] = workers or available_cores()
    # Local processes: no more than images; each with its share of the cores.
    if not dask:
        workers = min(workers, len(items))
    if threads is None and not scheduler and workers > 1:
        threads = threads_per_worker(workers)
    job = Job(str(out), settings, weights_path, gpu, overwrite, threads)
    try:
        write_config(out, options, settings, threads)
    except RunError as error:
        return _stop(result, str(error))
    _run_items(job, items, workers, dask, scheduler, result, unrecorded)
    try:
        result.rows = write_summary(out, settings, items, unrecorded)
    except RunError as error:
        return _stop(result, str(error))
    log.info("%d image(s) computed (%.2f images/s), %d verified and kept, %d failed; "
             "results in %s", result.computed, result.computed / max(result.seconds, 1e-9),
             result.verified, result.failed, out)
    return result


def _stop(result: BatchResult, error: str) -> BatchResult:
    """``result`` with its ``error``, logged."""
    log.error("%s", error)
    result.error = error
    return result


def _items(inputs: list, out: Path, result: BatchResult) -> tuple[list[Item], list[dict]]:
    """(the images to do, the summary rows of inputs that cannot be done): the inputs
    expanded, less the outputs of earlier runs and the images whose results would
    replace an input. Each problem is logged and counted as failed; no image to do
    sets ``result.error``."""
    problems: list[tuple[str, str]] = []
    paths = [path for path in expand_inputs(inputs, problems) if not is_output(path, out)]
    for where, why in problems:
        log.error("%s: %s", printable(where), why)
    if not paths:
        _stop(result, f"no images found in {' '.join(printable(str(i)) for i in inputs)}")
        return [], []
    unrecorded = [dict(image=where, output="", status=f"failed: {why}")
                  for where, why in problems]
    items = []
    sources = {resolved(path) for path in paths}
    for item in assign_names(paths):
        targets = [record_path(out, item.name), *output_paths(out, item.name).values()]
        clash = [target for target in targets if resolved(target) in sources]
        if clash:  # x.png and an input named x_overlay.png in --out: never overwrite it
            why = f"its results would replace the input {printable(str(clash[0]))}"
            log.error("%s: %s", printable(item.image), why)
            unrecorded.append(dict(image=item.image, output=item.name,
                                   status=f"failed: {why}"))
        else:
            items.append(item)
    result.failed += len(unrecorded)
    if not items:
        _stop(result, "no image can be done; nothing was done")
    return items, unrecorded


def _engine(job: Job, items: list[Item], workers: int, dask: bool,
            scheduler: Optional[str]) -> Iterator[dict]:
    if scheduler or dask:
        return engines.run_dask(TASKS, job, items, scheduler=scheduler, workers=workers)
    if workers > 1:
        return engines.run_processes(TASKS, job, items, workers)
    return engines.run_here(TASKS, job, items)


def _run_items(job: Job, items: list[Item], workers: int, dask: bool,
               scheduler: Optional[str], result: BatchResult, unrecorded: list[dict]) -> None:
    """Run the engine over ``items``, counting in ``result``; a run error, Ctrl-C or
    SIGTERM stops it (``result.error``, ``result.stopped``), keeping what is finished.
    Rows of failed images that have no record are added to ``unrecorded``."""
    progress = tqdm(total=len(items), unit="image", file=sys.stderr,
                    disable=not sys.stderr.isatty())
    start = time.perf_counter()
    try:
        # closing: an interruption in this loop stops the engine's workers at once
        with sigterm_stops_the_run(), \
                contextlib.closing(_engine(job, items, workers, dask, scheduler)) as rows:
            for row in rows:
                setattr(result, row["outcome"], getattr(result, row["outcome"]) + 1)
                if row["outcome"] == "failed":
                    log.error("%s: %s", printable(row["image"]),
                              row["status"].removeprefix("failed: "))
                if row.get("recorded") is False:
                    unrecorded.append(row)
                progress.update()
    except RunError as error:
        _stop(result, str(error))
    except KeyboardInterrupt as error:
        result.stopped = "terminated" if isinstance(error, Terminated) else "interrupted"
        log.error("%s: finished images are kept; rerun to complete the rest", result.stopped)
    finally:
        progress.close()
        result.seconds = time.perf_counter() - start
