"""A training run on a data set of image + target pairs: its prototxt files, checked data.

:func:`prepare_run` checks every pair of the data set (and of the val set) in
Python, then writes ``ssn_train_val.prototxt``, ``ssn_solver.prototxt`` and
``ssn_deploy.prototxt`` into the run folder, with snapshots at
``<run>/ssn_iter_<N>``. Rewriting them with the same settings changes nothing,
so a resumed run can be prepared again.
"""
from __future__ import annotations

import dataclasses
import logging
import os
from pathlib import Path
from typing import Optional

from caffe.proto import caffe_pb2
from google.protobuf import text_format

from ssn.atomic import write_if_changed
from ssn.nets.prototxt import HEADER, SOLVER, PrototxtOptions, generate
from ssn.training.pairs import DatasetError, check_dataset

log = logging.getLogger("ssn.training.task_run")

# The CPU recipe of the shipped model, with a run length for fine-tuning.
TASK_RECIPE = PrototxtOptions(batch_size=2, base_lr=5e-4, lr_step=2500, lr_gamma=0.2,
                              max_iter=5000, snapshot=500, test_interval=500, test_iter=5)
SNAPSHOT_NAME = "ssn"


def is_flow(pairs) -> bool:
    """Whether every target is a ``.flo`` file."""
    return all(pair.target.suffix.lower() == ".flo" for pair in pairs)


def checked_data(dataset: os.PathLike, target: str, val_dataset: Optional[os.PathLike],
                 flow: Optional[bool], batch_size: int) -> tuple[dict, int]:
    """The data layer's parameters and the target channels, after reading every pair.

    Raises
    ------
    DatasetError
        A bad pair, a val set with other channels, flow that is not 2 channels, or
        fewer pairs than a batch.
    """
    pairs, channels = check_dataset(dataset, target)
    if batch_size > len(pairs):
        raise DatasetError(f"{dataset} has {len(pairs)} pairs, fewer than a batch of "
                           f"{batch_size}")
    data = dict(dataset=str(Path(dataset).resolve()))
    if val_dataset is not None:
        val_pairs, val_channels = check_dataset(val_dataset, target)
        if val_channels != channels:
            raise DatasetError(f"{val_dataset} has {val_channels}-channel targets, {dataset} "
                               f"{channels}-channel ones")
        if batch_size > len(val_pairs):
            raise DatasetError(f"{val_dataset} has {len(val_pairs)} pairs, fewer than a batch "
                               f"of {batch_size}")
        data["val_dataset"] = str(Path(val_dataset).resolve())
    if target == "continuous":
        data["flow"] = is_flow(pairs) if flow is None else bool(flow)
        if data["flow"] and channels != 2:
            raise DatasetError(f"{dataset}: optical flow has 2 channels (u, v); its targets "
                               f"have {channels}")
    elif flow:
        raise DatasetError("--flow is for continuous targets")
    return data, channels


def without_tests(solver_text: str) -> str:
    """A solver that builds no test net (no test_iter, test_interval 0)."""
    param = text_format.Parse(solver_text[len(HEADER):], caffe_pb2.SolverParameter())
    del param.test_iter[:]
    param.test_interval = 0
    return HEADER + text_format.MessageToString(param)


def prepare_run(dataset: os.PathLike, target: str, out: os.PathLike,
                options: PrototxtOptions = TASK_RECIPE, val_dataset: Optional[os.PathLike] = None,
                flow: Optional[bool] = None) -> Path:
    """Check the data and write the run's prototxt files; return the solver's path.

    Parameters
    ----------
    dataset, val_dataset : path
        Folders or list files of pairs (:mod:`ssn.training.pairs`); without a val
        set the solver runs no tests.
    target : str
        "labels" or "continuous".
    out : path
        The run folder (created).
    options : PrototxtOptions
        The recipe; its target and snapshot prefix are set here.
    flow : bool, optional
        Continuous targets are optical flow (default: when every target is .flo).
    """
    out = Path(out)
    data, channels = checked_data(dataset, target, val_dataset, flow, options.batch_size)
    options = dataclasses.replace(
        options, target=target, snapshot_prefix=str(out.resolve() / SNAPSHOT_NAME),
        target_channels=channels if target == "continuous" else options.target_channels)
    files = generate(options, out, data)
    if val_dataset is None:
        files[SOLVER] = without_tests(files[SOLVER])
    out.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        if write_if_changed(out / name, text.encode()):
            log.info("wrote %s", out / name)
    return out / SOLVER
