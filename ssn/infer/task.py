"""The Caffe side of a batch run: the settings, checked against the model, and the task
that segments one image.

:func:`process` is the task every engine runs (in this process, in worker
processes, on Dask workers): it needs only the :class:`~ssn.infer.job.Job` and
an :class:`~ssn.infer.job.Item`, reads the image and writes the results itself,
and returns a summary row. A bad image gives a failed row and a record saying
why; a problem of the whole run (the output folder cannot be written, the disk
is full, the device or the weights are wrong) raises
:class:`~ssn.infer.job.RunError`. :data:`TASKS` hands it, with the worker check
and the record of a lost image, to :mod:`ssn.infer.engines`.

This is the one module of :mod:`ssn.infer` that imports Caffe (through
:mod:`ssn.inference` and :mod:`ssn.device`).
"""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import socket
import tempfile
import threading
import time
from pathlib import Path
from typing import Optional

import numpy as np

from ssn import __version__
from ssn.atomic import write_atomic
from ssn.device import use_device
from ssn.images import read_image, read_mask
from ssn.infer.engines import Tasks
from ssn.infer.job import Item, Job, RunError, weights_sha256
from ssn.infer.outputs import output_error, remove_files, write_outputs
from ssn.infer.records import (
    find_mask,
    new_record,
    output_paths,
    record_path,
    source_identity,
    summary_row,
    verify,
)
from ssn.inference import check_weights, superpixels
from ssn.model_metadata import ModelSettings
from ssn.settings import InferenceSettings
from ssn.threads import limit_threads

_COMPUTE = threading.Lock()  # Caffe nets are per process, not per thread (Dask workers
                             # may run several tasks at once)


def make_settings(n_segments: int, num_steps: Optional[int], features: Optional[str],
                  weights: Optional[Path], connectivity: bool, min_size_factor: float,
                  max_size_factor: float, grid: str = "calibrated", fused: bool = True,
                  position_weight: Optional[float] = None, mask_dir: Optional[Path] = None
                  ) -> tuple[dict, Optional[str]]:
    """(settings, weights path): everything that decides the labels, as recorded per image.

    ``num_steps`` and ``position_weight`` None are the model's (its metadata,
    :mod:`ssn.model_metadata`); the values recorded are those it runs with.
    ``position_weight`` is recorded only when it is not 1, and ``mask_dir`` (as an
    absolute path) only when given. The values come from one
    :class:`ssn.settings.InferenceSettings`; the model's metadata, its count
    calibration included, is recorded as a digest (``model_sha256``), so labels
    made under another calibration are not taken as done.

    Every value is checked here, once, so that a run with an option that can never
    work stops before any work (and before ``--overwrite`` replaces anything): the
    counts, the size factors, and the weights, loaded into a small net.

    Raises
    ------
    ValueError, TypeError, FileNotFoundError
        A count below 1, size factors that are not finite or out of order, a mode
        without weights, a missing file, weights that do not fit the net
        (:class:`ssn.nets.checks.NetCheckError`, naming the file and layer), or a
        ``mask_dir`` that is not a folder.
    """
    checked = InferenceSettings.build(
        n_segments, num_steps=num_steps, weights=weights, features=features, grid=grid,
        enforce_connectivity=connectivity, min_size_factor=min_size_factor,
        max_size_factor=max_size_factor, fused=fused, position_weight=position_weight)
    weights_path = None if checked.weights is None else Path(checked.weights)
    if weights_path is not None:
        check_weights(weights_path)
    min_size_factor, max_size_factor = checked.size_factors or (None, None)
    settings = dict(n_segments=checked.n_segments, grid=grid, fused=fused,
                    num_steps=checked.num_steps, features=checked.features,
                    weights_sha256=weights_sha256(weights_path) if weights_path else None,
                    connectivity=connectivity, min_size_factor=min_size_factor,
                    max_size_factor=max_size_factor, version=__version__,
                    model_sha256=model_digest(checked.model))
    if checked.position_weight != 1.0:
        settings["position_weight"] = float(checked.position_weight)
    if mask_dir is not None:
        if not Path(mask_dir).is_dir():
            raise ValueError(f"--mask-dir {mask_dir} is not a folder")
        settings["mask_dir"] = str(Path(mask_dir).absolute())
    return settings, weights_path


def model_digest(model: ModelSettings) -> str:
    """A short sha256 of what the model's metadata decides (steps, position weight,
    colour scale, features, the count calibration): records made under another
    calibration are stale."""
    decided = {key: value for key, value in model.to_dict().items() if key != "description"}
    text = json.dumps(decided, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def check_job_weights(job: Job) -> None:
    """Raise :class:`RunError` if the job's weights file here is not the one its settings
    were made with (by sha256), or cannot be read."""
    expected = job.settings.get("weights_sha256")
    if not expected:
        return
    try:
        actual = weights_sha256(job.weights)
    except OSError as error:
        raise RunError(f"cannot read the weights {job.weights}: {error.strerror}") from error
    if actual != expected:
        raise RunError(f"the weights {job.weights} on {socket.gethostname()} differ from the "
                       "ones this run was started with (sha256 mismatch)")


# Errors of one image's output names, not of --out: that image fails, the run goes on.
NAME_ERRNOS = (errno.ENAMETOOLONG, errno.EILSEQ)


def name_failure(job: Job, item: Item, error: OSError) -> dict:
    """The summary row of an image whose outputs cannot be named in --out (no record can
    be written either: run_batch lists it in the summary)."""
    reason = (f"failed: its outputs cannot be named {item.name!r} in {job.out} "
              f"({error.strerror or error}): rename the image")
    row = dict(summary_row(new_record(job, item)), status=reason)
    return dict(row, outcome="failed", recorded=False)


def record_failure(job: Job, item: Item, reason: str) -> dict:
    """Record that ``item`` failed and why, in place of its results (which no longer
    describe the image); return its summary row.

    Raises
    ------
    RunError
        If --out cannot be written.
    """
    out = Path(job.out)
    record = dict(new_record(job, item), status=f"failed: {reason}")
    try:
        remove_files([record_path(out, item.name), *output_paths(out, item.name).values()])
        write_atomic(record_path(out, item.name), json.dumps(record, indent=1))
    except OSError as error:
        if error.errno in NAME_ERRNOS:
            return name_failure(job, item, error)
        raise output_error(out, error) from error
    return dict(summary_row(record), outcome="failed")


def segment(rgb: np.ndarray, job: Job, mask: Optional[np.ndarray] = None) -> np.ndarray:
    """The labels of one RGB image with the job's settings (with a ``mask``: 0 outside
    it, from 1 inside)."""
    settings = job.settings
    factors = {}
    if settings["connectivity"]:
        factors = dict(min_size_factor=settings["min_size_factor"],
                       max_size_factor=settings["max_size_factor"])
    return superpixels(rgb, settings["n_segments"], num_steps=settings["num_steps"],
                       weights=job.weights,
                       enforce_connectivity=settings["connectivity"],
                       features=settings["features"], grid=settings["grid"],
                       fused=settings["fused"],
                       position_weight=settings.get("position_weight", 1.0), mask=mask,
                       **factors)


def read_item_mask(job: Job, item: Item, shape: tuple[int, int]
                   ) -> tuple[Optional[np.ndarray], Optional[dict]]:
    """(mask, its identity for the record) of an image when the job has a mask folder,
    else (None, None).

    Raises
    ------
    ValueError
        The mask is missing, unreadable or of another size than the image.
    """
    mask_dir = job.settings.get("mask_dir")
    if not mask_dir:
        return None, None
    path = find_mask(mask_dir, item.name)
    try:
        identity = dict(path=str(path), **source_identity(str(path)))
    except OSError:
        raise ValueError(f"no mask {path}") from None
    return read_mask(path, shape), identity


def process(job: Job, item: Item) -> dict:
    """Make sure one image's results are in ``job.out``; return its summary row.

    Verified results are kept (``outcome`` 'verified') unless ``job.overwrite``;
    otherwise the image is read, segmented and its files written, all or none,
    then its record (``outcome`` 'computed'). An image that cannot be read or
    segmented gets a record saying why (``outcome`` 'failed'); its older results
    are removed, as they no longer describe it.

    Raises
    ------
    RunError
        When no image could succeed: the device cannot be used, the weights differ
        from the run's, or --out cannot be written (full disk, permissions).
    """
    out = Path(job.out)
    try:
        use_device(job.gpu)
    except ValueError as error:
        raise RunError(f"{socket.gethostname()}: {error}") from error
    check_job_weights(job)
    if not job.overwrite:
        record, _ = verify(item, out, job.settings)
        if record is not None:
            return dict(summary_row(record), outcome="verified")
    record = new_record(job, item)
    outputs = output_paths(out, item.name)
    start = time.perf_counter()
    try:
        source = source_identity(item.image) if os.path.isfile(item.image) else None
        rgb = read_image(Path(item.image))
        mask, mask_record = read_item_mask(job, item, rgb.shape[:2])
        with _COMPUTE, limit_threads(job.threads):
            labels = segment(rgb, job, mask)
    except Exception as error:  # noqa: BLE001 - one bad image must not stop the run
        message = str(error) if isinstance(error, (ValueError, OSError)) else \
            f"{type(error).__name__}: {error}"
        return record_failure(job, item, message)
    seconds = time.perf_counter() - start
    record.update(height=rgb.shape[0], width=rgb.shape[1],
                  actual=int(labels.max()) + (1 if mask is None else 0),
                  seconds=f"{seconds:.3f}", status="ok", source=source,
                  threads=job.threads, host=socket.gethostname())
    if mask_record is not None:
        record["mask"] = mask_record
    try:
        # While the files change, the record says 'incomplete': an interrupted rewrite is
        # never taken as done, and its files are still known as ours (not inputs).
        pending = dict(record, status="incomplete",
                       files={key: dict(name=path.name) for key, path in outputs.items()})
        write_atomic(record_path(out, item.name), json.dumps(pending, indent=1))
        record["files"] = write_outputs(out, item.name, rgb, labels)
    except OSError as error:
        with contextlib.suppress(OSError):  # nothing unverifiable left: no files, no record
            remove_files([*outputs.values(), record_path(out, item.name)])
        if error.errno in NAME_ERRNOS:
            return name_failure(job, item, error)
        raise output_error(out, error) from error
    try:
        write_atomic(record_path(out, item.name), json.dumps(record, indent=1))
    except OSError as error:
        remove_files(outputs.values())  # files without a record would be unverifiable
        if error.errno in NAME_ERRNOS:
            return name_failure(job, item, error)
        raise output_error(out, error) from error
    return dict(summary_row(record), outcome="computed")



def check_worker(job: Job) -> None:
    """Whether this process (a Dask worker) can run the job's tasks: its device, the
    output folder at the job's path, the weights the run was started with.

    Raises
    ------
    RunError
        Saying which host cannot, and why.
    """
    host = socket.gethostname()
    try:
        use_device(job.gpu)
    except ValueError as error:
        raise RunError(f"{host}: {error}") from error
    try:
        with tempfile.TemporaryFile(dir=job.out, prefix=".ssn-infer-probe."):
            pass
    except OSError as error:
        raise RunError(f"{host} cannot write to {job.out} ({error.strerror}): workers need "
                       "the output folder at the same path") from error
    check_job_weights(job)


# What the engines run: one image, the check of a Dask worker, and the record of an image
# whose workers died.
TASKS = Tasks(run=process, check=check_worker, lost=record_failure)
