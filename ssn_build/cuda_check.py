"""Compile our CUDA sources with nvcc, and Caffe's cuDNN layers as USE_CUDNN builds them (no
link, no GPU needed): CI's check of the GPU paths."""
from __future__ import annotations

import logging
import shutil
import subprocess
import sys
import sysconfig
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ssn_build.make import CUDA_ARCH, BuildConfig, numpy_include, tree_dir
from ssn_build.patches import read_series, touched_files
from ssn_build.source import CUDA_DIR, PATCH_DIR
from ssn_build.splice import splice_destinations

log = logging.getLogger("ssn_build")


def patched_cuda_sources(tree: Path) -> list[Path]:
    """The build tree's ``.cu`` files that patches/caffe/series changes (as patched)."""
    names = {name for patch in read_series(PATCH_DIR) for name in touched_files(patch)}
    return [tree / name for name in sorted(names) if name.endswith(".cu")]


CUDNN_CHECK_ARCH = ("-gencode", "arch=compute_90,code=sm_90")


def cudnn_include(nvcc: str) -> Path | None:
    """The folder holding ``cudnn.h``: the CUDA toolkit's, else the system's."""
    for folder in (Path(nvcc).resolve().parent.parent / "include", Path("/usr/include")):
        if (folder / "cudnn.h").exists():
            return folder
    return None


def cudnn_sources(tree: Path) -> list[Path]:
    """Caffe's sources that USE_CUDNN compiles differently (as patched)."""
    return (sorted((tree / "src/caffe/layers").glob("cudnn_*.c*"))
            + [tree / "src/caffe/util/cudnn.cpp", tree / "src/caffe/layer_factory.cpp"])


def check_cuda_compile(cache: Path, jobs: int) -> int:
    """Compile each of our ``cuda/*.cu``, and each of Caffe's ``.cu`` files that a
    patch of the series changes, with ``nvcc -c`` (no link); then Caffe's cuDNN
    layers, ``util/cudnn.cpp`` and ``layer_factory.cpp`` with ``-DUSE_CUDNN`` (g++
    for ``.cpp``) when ``cudnn.h`` is found; return an exit code.

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
    cudnn = cudnn_include(nvcc)
    if cudnn is None:
        log.info("cuDNN sources skipped: no cudnn.h beside nvcc or in /usr/include")
    else:
        sources += cudnn_sources(tree)
    cudnn_flags = ["-DUSE_CUDNN", "-isystem", str(cudnn)] if cudnn else []
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

        cuda_root = Path(nvcc).resolve().parent.parent
        # g++ for the cuDNN layers' .cpp files: CUDA's headers (Thrust lives in
        # include/cccl since CUDA 13) and Python's, for layer_factory.cpp.
        # Caffe's own sources, built as its Makefile does: warnings shown, not errors.
        host_flags = ["-Wall", "-Wno-sign-compare", "-DNDEBUG", "-O2", "-fPIC",
                      f"-I{overlay}", "-DWITH_PYTHON_LAYER",
                      "-isystem", sysconfig.get_paths()["include"],
                      "-isystem", numpy_include()]
        for include in (cuda_root / "include", cuda_root / "include/cccl"):
            host_flags += ["-isystem", str(include)]
        for index, flag in enumerate(flags):
            if flag == "-isystem":
                host_flags += flags[index:index + 2]

        def compile_one(source: Path) -> tuple[Path, subprocess.CompletedProcess]:
            output = Path(scratch) / f"{sources.index(source)}-{source.stem}.o"
            extra = cudnn_flags if source.name.startswith(("cudnn", "layer_factory")) else []
            if source.suffix == ".cpp":
                command = ["g++", *host_flags, *extra, "-c", str(source), "-o", str(output)]
            elif extra:  # Caffe's cuDNN kernels: one architecture is check enough
                command = [nvcc, *[flag for flag in flags if flag not in CUDA_ARCH.split()],
                           *CUDNN_CHECK_ARCH, *extra, "-c", str(source), "-o", str(output)]
            else:
                command = [nvcc, *flags, *extra, "-c", str(source), "-o", str(output)]
            return source, subprocess.run(command, capture_output=True, text=True)

        failures = 0
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            for source, result in pool.map(compile_one, sources):
                if result.returncode == 0:
                    log.info("compiled: %s", source.name)
                else:
                    failures += 1
                    log.error("compile failed: %s\n%s%s", source.name, result.stdout,
                              result.stderr)
    log.info("compiled %d of %d file(s) (.cu with %s)", len(sources) - failures,
             len(sources), nvcc)
    return 1 if failures else 0
