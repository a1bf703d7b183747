"""Compile ``ssn/native/*.cpp`` into ``libssn_native.so`` (loaded by :mod:`ssn.native`)."""
from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from ssn.atomic import atomic_path
from ssn.native import LIBRARY_NAME
from ssn_build.source import NATIVE_DIR

COMPILE_FLAGS = ("-O2", "-shared", "-fPIC", "-std=c++14", "-pthread")


def native_sources(source_dir: Path = NATIVE_DIR) -> list[Path]:
    """The C++ sources compiled into the library, sorted by name."""
    return sorted(Path(source_dir).glob("*.cpp"))


def build_native(out_dir: Path, source_dir: Path = NATIVE_DIR) -> Path:
    """Compile ``source_dir/*.cpp`` into ``out_dir/libssn_native.so``.

    Nothing is compiled when the library exists and is newer than every source.
    The library is written under a temporary name and renamed into place, so a
    concurrent loader never sees a half-written file.

    Returns
    -------
    Path
        The library's path.

    Raises
    ------
    RuntimeError
        If there are no sources, no C++ compiler, or the compiler fails (its
        stderr is included).
    """
    out_dir = Path(out_dir)
    library = out_dir / LIBRARY_NAME
    sources = native_sources(source_dir)
    if not sources:
        raise RuntimeError(f"no C++ sources in {source_dir}")
    newest = max(source.stat().st_mtime for source in sources)
    if library.exists() and library.stat().st_mtime >= newest:
        return library
    compiler = os.environ.get("CXX", "g++")
    if shutil.which(compiler) is None:
        raise RuntimeError(f"C++ compiler {compiler!r} not found; set CXX or install g++")
    with atomic_path(library) as tmp:
        command = [compiler, *COMPILE_FLAGS, *map(str, sources), "-o", str(tmp)]
        result = subprocess.run(command, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(f"building {library} failed ({' '.join(command)}):\n"
                               f"{result.stderr}")
        tmp.chmod(0o755)
    return library
