"""What a batch run is: its :class:`Job` (settings, weights, device, output folder), its
:class:`Item` (one image and the name of its outputs), and :class:`RunError`.

Both are plain values that pickle, so that worker processes and Dask workers
get them as they are. The settings dict is made by :func:`ssn.infer.task.make_settings`
(which checks it against the model) and compared by :func:`settings_difference`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from functools import lru_cache
from typing import Optional

from ssn.atomic import sha256_of

TOOL = "ssn-infer"


class RunError(Exception):
    """A problem of the whole run, not of one image (the output folder cannot be written,
    the device or the weights are wrong): the run stops, keeping what is finished."""


@dataclass(frozen=True)
class Item:
    """One input image: its absolute path, and the name of its outputs in the folder."""

    image: str
    name: str


@dataclass
class Job:
    """What every task needs to know, picklable for worker processes and Dask.

    Attributes
    ----------
    out : str
        The output folder (absolute; on a cluster, the same path on every worker).
    settings : dict
        What makes the labels (:func:`ssn.infer.task.make_settings`): recorded with
        each image and compared on reruns.
    weights : str or None
        The .caffemodel for deep features.
    gpu : int
        GPU id, -1 for the CPU.
    overwrite : bool
        Recompute images whose results are verified.
    threads : int or None
        OpenMP/BLAS threads per process; None leaves the process's own setting.
    """

    out: str
    settings: dict
    weights: Optional[str]
    gpu: int = -1
    overwrite: bool = False
    threads: Optional[int] = None


@lru_cache(maxsize=8)
def _weights_sha256(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(path)


def weights_sha256(path: str) -> str:
    """The weights file's sha256, computed once per process for each version of the file."""
    stat = os.stat(path)
    return _weights_sha256(path, stat.st_size, stat.st_mtime_ns)


def settings_difference(old: dict, new: dict) -> str:
    """'settings differ (then -> now): n_segments 100 -> 200, ...'."""
    keys = sorted(set(old) | set(new))
    return "settings differ (then -> now): " + ", ".join(
        f"{key} {old.get(key)} -> {new.get(key)}" for key in keys if old.get(key) != new.get(key))
