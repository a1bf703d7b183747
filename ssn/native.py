"""Load ``libssn_native.so``, the small C++ helpers used from Python.

The sources are ``ssn/native/*.cpp``: plain ``extern "C"`` functions on raw
arrays. The build tool (``python -m ssn_build``) compiles them into the
environment's ``lib`` directory, beside ``libcaffe.so``; this module only loads
the result with :mod:`ctypes`.
"""
from __future__ import annotations

import ctypes
import functools
import sys
from pathlib import Path

LIBRARY_NAME = "libssn_native.so"


def library_path() -> Path:
    """Where the build tool installs the library: ``<sys.prefix>/lib``."""
    return Path(sys.prefix) / "lib" / LIBRARY_NAME


@functools.lru_cache(maxsize=None)
def load_native() -> ctypes.CDLL:
    """The native library, loaded once per process.

    Raises
    ------
    RuntimeError
        If the library is missing (the build tool has not run in this environment).
    """
    library = library_path()
    if not library.is_file():
        raise RuntimeError(f"{library} is missing: build it with `python -m ssn_build` "
                           "(or `bash tools/setup.sh`) in this environment")
    return ctypes.CDLL(str(library))
