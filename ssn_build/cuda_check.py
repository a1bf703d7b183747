"""Compile our CUDA sources with nvcc (no link, no GPU needed): CI's check of the GPU paths."""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ssn_build.make import CUDA_ARCH, BuildConfig, tree_dir
from ssn_build.patches import read_series, touched_files
from ssn_build.source import CUDA_DIR, PATCH_DIR
from ssn_build.splice import splice_destinations

log = logging.getLogger("ssn_build")


def patched_cuda_sources(tree: Path) -> list[Path]:
    """The build tree's ``.cu`` files that patches/caffe/series changes (as patched)."""
    names = {name for patch in read_series(PATCH_DIR) for name in touched_files(patch)}
    return [tree / name for name in sorted(names) if name.endswith(".cu")]


def check_cuda_compile(cache: Path, jobs: int) -> int:
    """Compile each of our ``cuda/*.cu``, and each of Caffe's ``.cu`` files that a
    patch of the series changes, with ``nvcc -c`` (no link); return an exit code.

    Uses the CPU build tree's Caffe headers and generated ``caffe.pb.h`` (run
    ``python -m ssn_build`` first), with our headers from the repository
    overlaid in front, and the GPU build's flags and architectures. Warnings
    are errors. Without nvcc on PATH it logs "skipped: no nvcc" and succeeds.
    """
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        log.info("skipped: no nvcc")
        return 0
    tree = tree_dir(BuildConfig(venv=Path(sys.prefix), cache=cache, gpu=False))
    if not (tree / "build/src/caffe/proto/caffe.pb.h").exists():
        log.error("no CPU build in %s: run python -m ssn_build first", tree)
        return 1
    sources = sorted(CUDA_DIR.glob("*.cu")) + patched_cuda_sources(tree)
    with tempfile.TemporaryDirectory() as scratch:
        overlay = Path(scratch) / "include"
        for relative, source in splice_destinations().items():
            if relative.startswith("include/"):
                target = overlay / relative[len("include/"):]
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(source, target)
        flags = ["-ccbin=g++", "-Xcompiler", "-fPIC,-Wall,-Wno-sign-compare,-Werror",
                 "--Werror", "all-warnings", "-DNDEBUG", "-O2", f"-I{overlay}"]
        for include in (tree / "include", tree / "build/src",
                        Path("/usr/include/hdf5/serial"),
                        Path("/usr/include/x86_64-linux-gnu/openblas-pthread")):
            flags += ["-isystem", str(include)]
        flags += CUDA_ARCH.split()

        def compile_one(source: Path) -> tuple[Path, subprocess.CompletedProcess]:
            output = Path(scratch) / f"{sources.index(source)}-{source.stem}.o"
            command = [nvcc, *flags, "-c", str(source), "-o", str(output)]
            return source, subprocess.run(command, capture_output=True, text=True)

        failures = 0
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for source, result in pool.map(compile_one, sources):
                if result.returncode == 0:
                    log.info("nvcc ok: %s", source.name)
                else:
                    failures += 1
                    log.error("nvcc failed: %s\n%s%s", source.name, result.stdout,
                              result.stderr)
    log.info("compiled %d of %d .cu file(s) with %s", len(sources) - failures,
             len(sources), nvcc)
    return 1 if failures else 0
