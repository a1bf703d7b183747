"""Load ``libssn_native.so``, the small C++ helpers used from Python.

The sources are the ``*.cpp`` files beside this module, in the package's
folder ``ssn/native/``: plain ``extern "C"`` functions on raw arrays. The build
tool (``python -m ssn_build``) compiles them into the environment's ``lib``
directory, beside ``libcaffe.so``; this module only loads the result with
:mod:`ctypes`.
"""
from __future__ import annotations

import ctypes
import functools
import importlib.util
import sys
from pathlib import Path

LIBRARY_NAME = "libssn_native.so"


def library_candidates() -> list[Path]:
    """Where the build tool may have installed the library, in the order tried.

    ``<sys.prefix>/lib`` first. Inside Caffe's own tool (``caffe train`` running a
    Python layer) ``sys.prefix`` is the base interpreter's, not the venv's, so the
    ``lib`` folder beside the installed ``caffe`` package (the venv's, where the
    build tool put libcaffe) comes next.
    """
    candidates = [Path(sys.prefix) / "lib" / LIBRARY_NAME]
    spec = importlib.util.find_spec("caffe")
    if spec is not None and spec.origin is not None:
        # <venv>/lib/pythonX.Y/site-packages/caffe/__init__.py -> <venv>/lib
        venv_lib = Path(spec.origin).resolve().parents[3] / LIBRARY_NAME
        if venv_lib not in candidates:
            candidates.append(venv_lib)
    return candidates


def library_path() -> Path:
    """The first of :func:`library_candidates` that exists (else the first)."""
    candidates = library_candidates()
    return next((path for path in candidates if path.is_file()), candidates[0])


@functools.lru_cache(maxsize=None)
def load_native() -> ctypes.CDLL:
    """The native library, loaded once per process.

    Raises
    ------
    RuntimeError
        If the library is in none of the places the build tool installs it.
    """
    library = library_path()
    if not library.is_file():
        looked = ", ".join(str(path) for path in library_candidates())
        raise RuntimeError(f"{LIBRARY_NAME} is missing (looked in {looked}): build it with "
                           "`python -m ssn_build` (or `bash tools/setup.sh`) in the "
                           "environment that has pycaffe")
    return ctypes.CDLL(str(library))
