"""Superpixels for many images, on one core, all cores or a Dask cluster: the library
behind ``ssn-infer``.

The entry point is :func:`run_batch` (:mod:`ssn.infer.run`); it returns a
:class:`BatchResult`. The modules, each importing only those above it:

- :mod:`ssn.infer.job`: the :class:`Job`, an :class:`Item`, :class:`RunError`.
- :mod:`ssn.infer.records`: each image's record in the output folder, and its
  verification.
- :mod:`ssn.infer.inputs`: inputs expanded to image files, and their outputs' names.
- :mod:`ssn.infer.outputs`: the files written, the summary, the config, the folder
  checks.
- :mod:`ssn.infer.engines`: this process, worker processes or Dask, running a
  picklable task function.
- :mod:`ssn.infer.task`: the settings checked against the model, and the task that
  segments one image (the only one that imports Caffe).
- :mod:`ssn.infer.run`: :func:`run_batch`, which puts them together.

This package does not import Caffe by itself: a worker process imports
:mod:`ssn.infer.engines`, sets its thread count, and only then loads Caffe. So
``run_batch`` and ``BatchResult`` are loaded from :mod:`ssn.infer.run` on first use.
"""
from __future__ import annotations

import importlib
from typing import Any

from ssn.infer.job import Item, Job, RunError

_FROM_RUN = ("BatchResult", "run_batch")  # loaded on first use (see above)

__all__ = ["BatchResult", "Item", "Job", "RunError", "run_batch"]


def __getattr__(name: str) -> Any:
    if name not in _FROM_RUN:
        raise AttributeError(f"module 'ssn.infer' has no attribute {name!r}")
    return getattr(importlib.import_module("ssn.infer.run"), name)
