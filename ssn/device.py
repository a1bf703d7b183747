"""Choosing where Caffe runs: the CPU, or a GPU when this Caffe was built with CUDA.

Caffe keeps its mode and device per thread; :func:`use_device` sets them for the
calling thread and remembers them (:func:`current_device`), so that
:func:`on_device` can run a piece of work on one device and go back.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import numbers
import os
import subprocess
import sys
import threading
from typing import Iterator, Optional

import caffe

_gpu = {"used": False}
_thread = threading.local()  # .device: what use_device last set in this thread


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


def current_device() -> int:
    """The GPU this thread's Caffe runs on by :func:`use_device`, or -1 for the CPU
    (Caffe's own default)."""
    return getattr(_thread, "device", -1)


def use_device(gpu: int) -> None:
    """Run Caffe on GPU ``gpu``, or on the CPU when ``gpu`` is negative (in this thread:
    Caffe's mode is per thread).

    Raises
    ------
    ValueError
        If a GPU is asked of a CPU-only Caffe, or a GPU this machine does not have:
        either would abort the process.
    """
    if gpu < 0:
        caffe.set_mode_cpu()
        _thread.device = -1
        return
    if not caffe_has_gpu():
        raise ValueError(f"GPU {gpu} was asked for, but this Caffe was built CPU-only: use "
                         "--gpu -1, or rebuild with `python -m ssn_build --gpu` on a machine "
                         "with CUDA")
    check_gpu_exists(gpu)
    caffe.set_device(gpu)
    caffe.set_mode_gpu()
    _thread.device = gpu
    _gpu["used"] = True


@contextlib.contextmanager
def on_device(gpu: Optional[int]) -> Iterator[int]:
    """A context that runs Caffe on GPU ``gpu`` (>= 0) and then goes back to the device
    before it; with None it stays where it is. Yields the device it runs on."""
    if gpu is None:
        yield current_device()
        return
    before = current_device()
    use_device(gpu)
    try:
        yield gpu
    finally:
        if before != gpu:
            use_device(before)


def gpu_argument(gpu) -> Optional[int]:
    """``gpu`` as a GPU id (an int >= 0), or None.

    Raises
    ------
    TypeError
        Not a whole number (a bool, float, string).
    ValueError
        A negative id (None means "as now", the CPU unless a GPU was chosen).
    """
    if gpu is None:
        return None
    if isinstance(gpu, bool) or not isinstance(gpu, numbers.Integral):
        raise TypeError(f"gpu must be a GPU id (an int >= 0) or None, got {gpu!r}")
    gpu = int(gpu)
    if gpu < 0:
        raise ValueError(f"gpu must be a GPU id >= 0, or None for the CPU; got {gpu}")
    return gpu


def check_gpu_exists(gpu: int) -> None:
    """Raise ValueError unless this machine has CUDA device ``gpu``.

    Counted with the CUDA runtime when it can be loaded, else by a child process
    that asks Caffe for the device (the answer is kept).
    """
    count = cuda_device_count()
    if count is not None:
        if gpu >= count:
            raise ValueError(f"there is no GPU {gpu}: CUDA sees {count} device(s)"
                             + (f", ids 0..{count - 1}" if count else ""))
        return
    reason = _probe_device(gpu)
    if reason:
        raise ValueError(f"GPU {gpu} cannot be used: {reason}")


def _cuda_runtime() -> Optional[ctypes.CDLL]:
    """The CUDA runtime library this process loaded with Caffe, or one on the library
    path; None without one."""
    names = []
    try:
        with open(f"/proc/{os.getpid()}/maps") as maps:
            names = sorted({line.split()[-1] for line in maps if "libcudart" in line})
    except OSError:
        pass
    found = ctypes.util.find_library("cudart")
    for name in names + ([found] if found else []):
        try:
            return ctypes.CDLL(name)
        except OSError:
            continue
    return None


def cuda_device_count() -> Optional[int]:
    """CUDA devices visible to this process (CUDA_VISIBLE_DEVICES applies), or None
    when the CUDA runtime cannot be asked."""
    runtime = _cuda_runtime()
    if runtime is None:
        return None
    count = ctypes.c_int(0)
    status = runtime.cudaGetDeviceCount(ctypes.byref(count))
    return count.value if status == 0 else 0


@functools.lru_cache(maxsize=None)
def _probe_device(gpu: int) -> Optional[str]:
    """Why Caffe cannot run on GPU ``gpu``, asked of a child process (a bad device
    aborts the process that asks); None when it can."""
    probe = f"import caffe; caffe.set_device({gpu}); caffe.set_mode_gpu()"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env=dict(os.environ, GLOG_minloglevel="2"), timeout=300)
    if result.returncode == 0:
        return None
    lines = result.stderr.strip().splitlines() or ["(no message)"]
    fatal = [line for line in lines if line.startswith("F") or "Check failed" in line]
    return (fatal or lines)[-1]
