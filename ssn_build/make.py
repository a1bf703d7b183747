"""Build configuration, the per-configuration tree, and Caffe's Makefile."""
from __future__ import annotations

import hashlib
import logging
import os
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ssn.atomic import write_if_changed
from ssn_build.source import CAFFE_SHA256, CHECKOUT, LAYER_DIR, PATCH_DIR
from ssn_build.splice import CAFFE_PROTO, splice_destinations

log = logging.getLogger("ssn_build")

LIBCAFFE = "libcaffe.so.1.0.0-rc3"
# Our C++ tests: one binary per test_*.cpp (caffe_layers/test/ one per layer,
# caffe_layers/util/ the helpers'), as Caffe's Makefile builds them.
LAYER_TEST_BINARIES = tuple(f"{source.stem}.testbin"
                            for source in sorted((LAYER_DIR / "test").glob("test_*.cpp")))
TEST_BINARIES = LAYER_TEST_BINARIES + tuple(
    f"{source.stem}.testbin" for source in sorted((LAYER_DIR / "util").glob("test_*.cpp")))
BUILD_STAMP = ".ssn_build_stamp"
# Caffe's command-line tools installed into <venv>/bin (build/tools/<name>.bin).
CAFFE_TOOLS = ("caffe", "convert_imageset", "compute_image_mean", "extract_features",
               "upgrade_net_proto_text", "upgrade_net_proto_binary",
               "upgrade_solver_proto_text")
NUMPY_INCLUDE_PLACEHOLDER = "<numpy include>"
# Generated files the sdist ships for an older protoc: they would shadow the ones
# make generates (caffe_pb2.py in the same place), so unpacking removes them.
STALE_GENERATED = (
    "include/caffe/proto/caffe.pb.h",
    "src/caffe/proto/caffe.pb.cc",
    "python/caffe/proto/caffe_pb2.py",
)

# Ampere and Hopper binaries plus Hopper PTX (nvcc 13 takes compute_75 and newer).
CUDA_ARCH = ("-gencode arch=compute_80,code=sm_80 "
             "-gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90")


@dataclass(frozen=True)
class BuildConfig:
    """What to build and where.

    Attributes
    ----------
    venv : Path
        Virtual environment that receives pycaffe, libcaffe and the tools.
    cache : Path
        Directory holding the downloaded source and the build trees.
    gpu : bool
        Build the CUDA paths (needs nvcc); CPU_ONLY otherwise.
    cudnn : bool
        With ``gpu``: cuDNN's convolutions, pooling and activations (USE_CUDNN).
    jobs : int
        Parallel make jobs.
    """

    venv: Path
    cache: Path
    gpu: bool = False
    cudnn: bool = True
    jobs: int = os.cpu_count() or 2


def default_cache() -> Path:
    return Path(os.environ.get("SSN_CAFFE_CACHE", Path.home() / ".cache" / "ssn-caffe"))


def numpy_include() -> str:
    import numpy
    return numpy.get_include()


def abi_tag() -> str:
    import numpy
    return f"py{sys.version_info.major}{sys.version_info.minor}-np{numpy.__version__.split('.')[0]}"


def makefile_config(config: BuildConfig, numpy_headers: str | None = None) -> str:
    """Makefile.config for this machine's Python, numpy, BLAS and HDF5.

    ``numpy_headers`` replaces numpy's include directory (which lies inside the
    venv, so differs between checkouts) when the text is used as a key.
    """
    py_include = sysconfig.get_paths()["include"]
    py_libdir = sysconfig.get_config_var("LIBDIR")
    py_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    boost_python = f"boost_python{sys.version_info.major}{sys.version_info.minor}"
    lines = [
        "# Written by the ssn_build tool; edits are overwritten.",
        # The stock data layers (ImageData, Data, WindowData) and convert_imageset.
        "USE_OPENCV := 1", "USE_LEVELDB := 1", "USE_LMDB := 1", "OPENCV_VERSION := 3",
        "BLAS := open",
        "BLAS_INCLUDE := /usr/include/x86_64-linux-gnu/openblas-pthread",
        f"PYTHON_INCLUDE := {py_include} {numpy_headers or numpy_include()}",
        f"PYTHON_LIB := {py_libdir}",
        f"PYTHON_LIBRARIES := {boost_python} python{py_version}",
        "WITH_PYTHON_LAYER := 1",
        "INCLUDE_DIRS := $(PYTHON_INCLUDE) /usr/local/include /usr/include/hdf5/serial "
        "/usr/include/opencv4",
        "LIBRARY_DIRS := $(PYTHON_LIB) /usr/local/lib /usr/lib "
        "/usr/lib/x86_64-linux-gnu/hdf5/serial",
        "BUILD_DIR := build", "DISTRIBUTE_DIR := distribute",
        # The SSN layers' CPU loops run on all cores through OpenMP.
        "CXXFLAGS += -fopenmp", "LINKFLAGS += -fopenmp",
        "Q ?= @",
    ]
    if config.gpu:
        lines += gpu_config_lines(config)
    else:
        lines.append("CPU_ONLY := 1")
    return "\n".join(lines) + "\n"


def gpu_config_lines(config: BuildConfig) -> list[str]:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise RuntimeError("--gpu needs nvcc on PATH")
    cuda_dir = Path(nvcc).resolve().parent.parent
    lines = [f"CUDA_DIR := {cuda_dir}", f"CUDA_ARCH := {CUDA_ARCH}"]
    if (cuda_dir / "include/cccl").is_dir():  # Thrust, for g++ (nvcc finds it itself)
        lines.append(f"INCLUDE_DIRS += {cuda_dir / 'include/cccl'}")
    if config.cudnn:
        if not any((folder / "cudnn.h").exists()
                   for folder in (cuda_dir / "include", Path("/usr/include"))):
            raise RuntimeError(f"--gpu builds with cuDNN, but no cudnn.h is in {cuda_dir}/include "
                               "or /usr/include: install cuDNN 9, or pass --no-cudnn")
        lines.append("USE_CUDNN := 1")
    return lines


def config_key(config: BuildConfig) -> str:
    """Makefile.config with the checkout-specific numpy path replaced by a placeholder."""
    return makefile_config(config, NUMPY_INCLUDE_PLACEHOLDER)


def tree_dir(config: BuildConfig) -> Path:
    """Build tree for this source, flavour, ABI and configuration.

    Caffe's Makefile does not rebuild when Makefile.config changes, so a new
    configuration gets a tree of its own. The key leaves out the checkout's
    path, so every clone on a machine shares one warm tree.
    """
    flavour = "gpu" if config.gpu else "cpu"
    settings = hashlib.sha256(config_key(config).encode()).hexdigest()[:8]
    return config.cache / f"caffe-{CAFFE_SHA256[:12]}-{flavour}-{abi_tag()}-{settings}"


def unpack(tarball: Path, tree: Path) -> None:
    """Unpack the sdist into ``tree`` unless it is there already."""
    if (tree / "Makefile").exists():
        return
    log.info("unpacking %s into %s", tarball.name, tree)
    tree.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tree.parent) as scratch:
        with tarfile.open(tarball) as archive:
            archive.extractall(scratch, filter="data")
        (top,) = Path(scratch).iterdir()
        (top / "Makefile.config").unlink(missing_ok=True)
        for relative in STALE_GENERATED:
            (top / relative).unlink(missing_ok=True)
        top.rename(tree)


def input_fingerprint(config: BuildConfig, tree: Path) -> str:
    """Hash of everything that decides the build's outputs.

    The patched and spliced files are read from the tree, so an edited patch or
    layer changes it; so does an edit to this tool.
    """
    digest = hashlib.sha256(CAFFE_SHA256.encode())
    digest.update(config_key(config).encode())
    patched = (tree / ".ssn_patched_files").read_text().split()
    for relative in sorted(set(splice_destinations()) | set(patched) | {CAFFE_PROTO}):
        digest.update(relative.encode())
        path = tree / relative
        digest.update(path.read_bytes() if path.exists() else b"<absent>")
    for source in sorted(PATCH_DIR.iterdir()) + sorted((CHECKOUT / "ssn_build").glob("*.py")):
        digest.update(source.read_bytes())
    return digest.hexdigest()


def build_outputs(tree: Path) -> list[Path]:
    outputs = [tree / "build/lib" / LIBCAFFE, tree / "python/caffe/_caffe.so",
               tree / "python/caffe/proto/caffe_pb2.py"]
    outputs += [tree / f"build/tools/{tool}.bin" for tool in CAFFE_TOOLS]
    return outputs + [tree / "build/test" / name for name in TEST_BINARIES]


# Caffe's quiet Makefile echoes one such line per file it compiles.
COMPILE_STEP = re.compile(r"^(?:echo )?(CXX|NVCC) ")
PROGRESS_STEPS = 10  # progress lines when not on a terminal


class MakeError(RuntimeError):
    """make failed; the message holds the end of its log."""


def make_targets(config: BuildConfig) -> list[list[str]]:
    """The make goals, in order. The test binaries go separately: Caffe's rule for test
    objects lacks the generated proto header as a prerequisite, so in one parallel
    make they can compile before it exists."""
    return [["all", "pycaffe"], [f".build_release/test/{name}" for name in TEST_BINARIES]]


def planned_compiles(tree: Path, make: list[str], goals: list[str]) -> int:
    """How many files make would compile for ``goals`` (a dry run)."""
    dry = subprocess.run(make + ["-n"] + goals, cwd=tree, capture_output=True, text=True)
    return sum(bool(COMPILE_STEP.match(line)) for line in dry.stdout.splitlines())


def run_logged(command: list[str], tree: Path, log_file, counter: dict, total: int) -> None:
    """Run ``command`` in ``tree``, its output into ``log_file``, counting compiled files."""
    with subprocess.Popen(command, cwd=tree, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, errors="replace") as process:
        for line in process.stdout:
            log_file.write(line)
            if COMPILE_STEP.match(line):
                counter["done"] += 1
                step = max(1, total // PROGRESS_STEPS)
                if counter["done"] % step == 0 or counter["done"] == total:
                    log.info("compiled %d/%d files", counter["done"], total)
    if process.returncode != 0:
        raise MakeError(f"{' '.join(command)} failed (exit {process.returncode})")


def run_make(config: BuildConfig, tree: Path, log_path: Path) -> None:
    """Build libcaffe, the tools, pycaffe and our C++ layer tests.

    make's full output goes to ``log_path``; the console gets a few progress
    lines, and the log's end when make fails.
    """
    write_if_changed(tree / "Makefile.config", makefile_config(config).encode())
    stamp = tree / BUILD_STAMP
    fingerprint = input_fingerprint(config, tree)
    if stamp.exists() and stamp.read_text() == fingerprint and all(
            path.exists() for path in build_outputs(tree)):
        log.info("caffe build is up to date (%s)", tree)
        return
    stamp.unlink(missing_ok=True)
    make = ["make", f"-j{config.jobs}"]
    total = sum(planned_compiles(tree, make, goals) for goals in make_targets(config))
    log.info("compiling %d files in %s with %s; full log: %s", total, tree, " ".join(make),
             log_path)
    counter = {"done": 0}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w") as log_file:
        try:
            for goals in make_targets(config):
                run_logged(make + goals, tree, log_file, counter, max(total, 1))
        except MakeError as error:
            log_file.flush()
            tail = log_path.read_text(errors="replace").splitlines()[-60:]
            raise MakeError(f"{error}; the end of {log_path}:\n" + "\n".join(tail)) from None
    log.info("compiled %d files", counter["done"])
    stamp.write_text(fingerprint)
