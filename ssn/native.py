"""Build and load ``libssn_native.so``, the small C++ helpers used from Python.

The sources are ``ssn/native/*.cpp``: plain ``extern "C"`` functions on raw arrays, loaded with
:mod:`ctypes`. :func:`build_native` compiles them into one shared library; :func:`load_native`
finds (and if needed builds) it in the active environment's ``lib`` directory.
"""
from __future__ import annotations

import ctypes
import functools
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

LIBRARY_NAME = "libssn_native.so"
SOURCE_DIR = Path(__file__).resolve().parent / "native"
COMPILE_FLAGS = ("-O2", "-shared", "-fPIC", "-std=c++14")


def native_sources() -> list[Path]:
    """The C++ sources compiled into the library, sorted by name."""
    return sorted(SOURCE_DIR.glob("*.cpp"))


def build_native(out_dir: Path) -> Path:
    """Compile ``ssn/native/*.cpp`` into ``out_dir/libssn_native.so``.

    Nothing is compiled when the library exists and is newer than every source. The library is
    written under a temporary name and renamed into place, so a concurrent loader never sees a
    half-written file.

    Parameters
    ----------
    out_dir : Path
        Directory for the library; created if missing.

    Returns
    -------
    Path
        The library's path.

    Raises
    ------
    RuntimeError
        If there are no sources, no C++ compiler, or the compiler fails (its stderr is included).
    """
    out_dir = Path(out_dir)
    library = out_dir / LIBRARY_NAME
    sources = native_sources()
    if not sources:
        raise RuntimeError(f"no C++ sources in {SOURCE_DIR}")
    newest = max(src.stat().st_mtime for src in sources)
    if library.exists() and library.stat().st_mtime >= newest:
        return library
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"C++ compiler {compiler!r} not found; set CXX or install g++")
    out_dir.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=".libssn_native.", suffix=".so", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        cmd = [compiler, *COMPILE_FLAGS, *map(str, sources), "-o", str(tmp)]
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            raise RuntimeError(f"building {library} failed ({' '.join(cmd)}):\n{proc.stderr}")
        os.chmod(tmp, 0o755)
        os.replace(tmp, library)
    finally:
        if tmp.exists():
            tmp.unlink()
    return library


@functools.lru_cache(maxsize=None)
def load_native() -> ctypes.CDLL:
    """The native library, from ``Path(sys.prefix) / "lib"``.

    The library is (re)built there first when it is missing or older than its sources (when the
    sources are present). Loaded once per process.

    Returns
    -------
    ctypes.CDLL

    Raises
    ------
    RuntimeError
        If the library is missing and cannot be built.
    """
    lib_dir = Path(sys.prefix) / "lib"
    library = lib_dir / LIBRARY_NAME
    if native_sources() or not library.exists():
        library = build_native(lib_dir)
    return ctypes.CDLL(str(library))
