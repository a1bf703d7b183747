"""Choosing where Caffe runs: the CPU, or a GPU when this Caffe was built with CUDA."""
from __future__ import annotations

import caffe

_gpu = {"used": False}


def gpu_used() -> bool:
    """Whether :func:`use_device` put this process's Caffe on a GPU (CUDA does not survive
    a fork)."""
    return _gpu["used"]


def caffe_has_gpu() -> bool:
    """Whether the installed Caffe was built with CUDA (``python -m ssn_build --gpu``).

    The build tool records its flavour in ``caffe/_ssn_build.py``; a Caffe
    installed some other way is assumed to know its own mind.
    """
    try:
        from caffe import _ssn_build
    except ImportError:
        return True
    return not _ssn_build.CPU_ONLY


def use_device(gpu: int) -> None:
    """Run Caffe on GPU ``gpu``, or on the CPU when ``gpu`` is negative.

    Raises
    ------
    ValueError
        If a GPU is asked of a CPU-only Caffe, which would abort the process.
    """
    if gpu < 0:
        caffe.set_mode_cpu()
        return
    if not caffe_has_gpu():
        raise ValueError(f"GPU {gpu} was asked for, but this Caffe was built CPU-only: use "
                         "--gpu -1, or rebuild with `python -m ssn_build --gpu` on a machine "
                         "with CUDA")
    caffe.set_device(gpu)
    caffe.set_mode_gpu()
    _gpu["used"] = True
