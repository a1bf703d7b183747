"""Build BVLC Caffe 1.0 with the SSN layers spliced in, and install it into a venv.

The pinned Caffe source comes from its PyPI source distribution, checked against
a sha256. The unpacked tree lives in a cache directory outside the repository
(``$SSN_CAFFE_CACHE``, default ``~/.cache/ssn-caffe``), keyed on the source hash,
the build flavour and the Python/numpy ABI. Our files are copied into it only
when their content changed, so Caffe's Makefile rebuilds just what an edit
touches; a stamp over every input lets a repeated build skip ``make``.

The result is installed into a virtual environment: the ``caffe`` Python package
into its site-packages, ``libcaffe.so`` into ``<venv>/lib``, the ``caffe``
command-line tool into ``<venv>/bin`` and the C++ layer tests into
``<venv>/libexec/ssn-caffe``.
"""
from __future__ import annotations

import argparse
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
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from ssn import caffe_patches, cpu_speedups
from ssn.caffe_patches import (
    fix_crop_copy,
    patch_gpu_sources,
    patch_source_tree,
    restore_finetuning,
    write_if_changed,
)
from ssn.cpu_speedups import apply_cpu_speedups
from ssn.native import build_native

log = logging.getLogger("ssn.build")

CAFFE_REQUIREMENT = "brocolli-caffe==9.0.2"
CAFFE_SDIST = "brocolli-caffe-9.0.2.tar.gz"
CAFFE_SHA256 = "c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a"
LIBCAFFE = "libcaffe.so.1.0.0-rc3"
TEST_BINARY = "test_ssn_layers.testbin"

REPO_ROOT = Path(__file__).resolve().parent.parent
LAYER_DIR = REPO_ROOT / "caffe_layers"
CUDA_DIR = REPO_ROOT / "cuda"
PROTO_FRAGMENT = LAYER_DIR / "ssn.proto"

SPLICE_MANIFEST = ".ssn_spliced_files"
BUILD_STAMP = ".ssn_build_stamp"


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
    jobs : int
        Parallel make jobs.
    """

    venv: Path
    cache: Path
    gpu: bool = False
    jobs: int = os.cpu_count() or 2


def default_cache() -> Path:
    return Path(os.environ.get("SSN_CAFFE_CACHE", Path.home() / ".cache" / "ssn-caffe"))


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch_source(cache: Path) -> Path:
    """Download the pinned Caffe sdist into ``cache`` (once) and verify its hash."""
    downloads = cache / "downloads"
    tarball = downloads / CAFFE_SDIST
    if not tarball.exists() or sha256_of(tarball) != CAFFE_SHA256:
        downloads.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s", CAFFE_REQUIREMENT)
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--no-binary", ":all:", "--dest", str(downloads), CAFFE_REQUIREMENT],
            check=True)
    actual = sha256_of(tarball)
    if actual != CAFFE_SHA256:
        tarball.unlink()
        raise RuntimeError(f"{tarball.name}: sha256 {actual} != pinned {CAFFE_SHA256}")
    return tarball


def numpy_include() -> str:
    import numpy
    return numpy.get_include()


def abi_tag() -> str:
    import numpy
    return f"py{sys.version_info.major}{sys.version_info.minor}-np{numpy.__version__.split('.')[0]}"


def tree_dir(config: BuildConfig) -> Path:
    """Build tree for this source, flavour, ABI and Makefile.config.

    Caffe's Makefile does not rebuild when Makefile.config changes, so a new
    configuration gets a tree of its own.
    """
    flavour = "gpu" if config.gpu else "cpu"
    settings = hashlib.sha256(makefile_config(config).encode()).hexdigest()[:8]
    return config.cache / f"caffe-{CAFFE_SHA256[:12]}-{flavour}-{abi_tag()}-{settings}"


def unpack(tarball: Path, tree: Path, gpu: bool = False) -> None:
    """Unpack and patch the source once; an existing tree is kept as it is."""
    if (tree / "Makefile").exists():
        if gpu:
            patch_gpu_sources(tree)  # idempotent: trees from older versions of this file
        return
    log.info("unpacking %s into %s", tarball.name, tree)
    tree.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=tree.parent) as scratch:
        with tarfile.open(tarball) as archive:
            archive.extractall(scratch, filter="data")
        (top,) = Path(scratch).iterdir()
        patch_source_tree(top, gpu)
        top.rename(tree)


def splice_destinations() -> dict[str, Path]:
    """Map each destination in the Caffe tree (relative) to our source file."""
    places: dict[str, Path] = {}
    for source in sorted(LAYER_DIR.glob("*.hpp")):
        places[f"include/caffe/layers/{source.name}"] = source
    for source in sorted(LAYER_DIR.glob("*.cpp")):
        folder = "src/caffe/test" if source.name.startswith("test_") else "src/caffe/layers"
        places[f"{folder}/{source.name}"] = source
    for source in sorted(CUDA_DIR.glob("*.cuh")):
        places[f"include/caffe/ssn/{source.name}"] = source
    for source in sorted(CUDA_DIR.glob("*.cu")):
        places[f"src/caffe/layers/{source.name}"] = source
    return places


def spliced_proto(original: str, fragment: str) -> str:
    """Return caffe.proto with our LayerParameter fields and messages added.

    Works on the pristine text, so applying it again gives the same result.
    """
    match = re.search(r"// BEGIN LayerParameter fields\n(.*?)// END LayerParameter fields\n",
                      fragment, re.S)
    if match is None:
        raise ValueError(f"{PROTO_FRAGMENT}: missing the LayerParameter fields block")
    fields, messages = match.group(1), fragment[match.end():]
    anchor = re.search(r"message LayerParameter \{.*?\n\}\n", original, re.S)
    if anchor is None:
        raise ValueError("caffe.proto: message LayerParameter not found")
    closing = anchor.end() - 2  # position of the final "}" of LayerParameter
    return (original[:closing] + "  // SSN layers (caffe_layers/ssn.proto)\n" + fields
            + original[closing:] + "\n// ---- SSN layers (caffe_layers/ssn.proto) ----\n"
            + messages)


def touch_sources(tree: Path, places: dict[str, Path]) -> None:
    """Mark our spliced sources as changed.

    Caffe's Makefile passes include directories with -isystem, so its dependency
    files omit headers: an edit to one of our headers must be made visible to make
    by hand. Only our own sources include our headers.
    """
    for relative in places:
        if relative.endswith((".cpp", ".cu")):
            os.utime(tree / relative)


def splice(tree: Path) -> list[str]:
    """Copy our sources and proto fragment into ``tree``; return what changed."""
    changed = []
    places = splice_destinations()
    manifest = tree / SPLICE_MANIFEST
    previous = manifest.read_text().split() if manifest.exists() else []
    for stale in set(previous) - set(places):
        (tree / stale).unlink(missing_ok=True)
        changed.append(stale)
    for relative, source in places.items():
        if write_if_changed(tree / relative, source.read_bytes()):
            changed.append(relative)
    write_if_changed(manifest, "\n".join(sorted(places)).encode())
    if any(name.endswith((".hpp", ".cuh")) for name in changed):
        touch_sources(tree, places)

    proto = tree / "src/caffe/proto/caffe.proto"
    pristine = proto.with_name("caffe.proto.orig")
    if not pristine.exists():
        shutil.copy2(proto, pristine)
    text = spliced_proto(pristine.read_text(), PROTO_FRAGMENT.read_text())
    if write_if_changed(proto, text.encode()):
        changed.append("src/caffe/proto/caffe.proto")
    return changed


def makefile_config(config: BuildConfig) -> str:
    """Makefile.config for this machine's Python, numpy, BLAS and HDF5."""
    py_include = sysconfig.get_paths()["include"]
    py_libdir = sysconfig.get_config_var("LIBDIR")
    py_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    boost_python = f"boost_python{sys.version_info.major}{sys.version_info.minor}"
    lines = [
        "# Written by ssn/build.py; edits are overwritten.",
        "USE_OPENCV := 0", "USE_LEVELDB := 0", "USE_LMDB := 0",
        "BLAS := open",
        "BLAS_INCLUDE := /usr/include/x86_64-linux-gnu/openblas-pthread",
        f"PYTHON_INCLUDE := {py_include} {numpy_include()}",
        f"PYTHON_LIB := {py_libdir}",
        f"PYTHON_LIBRARIES := {boost_python} python{py_version}",
        "WITH_PYTHON_LAYER := 1",
        "INCLUDE_DIRS := $(PYTHON_INCLUDE) /usr/local/include /usr/include/hdf5/serial",
        "LIBRARY_DIRS := $(PYTHON_LIB) /usr/local/lib /usr/lib "
        "/usr/lib/x86_64-linux-gnu/hdf5/serial",
        "BUILD_DIR := build", "DISTRIBUTE_DIR := distribute",
        # The SSN layers' CPU loops run on all cores through OpenMP.
        "CXXFLAGS += -fopenmp", "LINKFLAGS += -fopenmp",
        "Q ?= @",
    ]
    if config.gpu:
        lines += gpu_config_lines()
    else:
        lines.append("CPU_ONLY := 1")
    return "\n".join(lines) + "\n"


# Ampere and Hopper binaries plus Hopper PTX (nvcc 13 takes compute_75 and newer).
CUDA_ARCH = ("-gencode arch=compute_80,code=sm_80 "
             "-gencode arch=compute_90,code=sm_90 -gencode arch=compute_90,code=compute_90")


def gpu_config_lines() -> list[str]:
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        raise RuntimeError("--gpu needs nvcc on PATH")
    cuda_dir = Path(nvcc).resolve().parent.parent
    return [f"CUDA_DIR := {cuda_dir}", f"CUDA_ARCH := {CUDA_ARCH}"]


def check_cuda_compile(cache: Path, jobs: int) -> int:
    """Compile each of our ``cuda/*.cu`` with ``nvcc -c`` (no link); return an exit code.

    Uses the CPU build tree's Caffe headers and generated ``caffe.pb.h`` (run
    ``python -m ssn.build`` first), with our headers from the repository
    overlaid in front, and the GPU build's flags and architectures. Warnings
    are errors. Without nvcc on PATH it logs "skipped: no nvcc" and succeeds.
    """
    nvcc = shutil.which("nvcc")
    if nvcc is None:
        log.info("skipped: no nvcc")
        return 0
    tree = tree_dir(BuildConfig(venv=Path(sys.prefix), cache=cache, gpu=False))
    if not (tree / "build/src/caffe/proto/caffe.pb.h").exists():
        log.error("no CPU build in %s: run python -m ssn.build first", tree)
        return 1
    sources = sorted(CUDA_DIR.glob("*.cu"))
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
            output = Path(scratch) / (source.stem + ".o")
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


def input_fingerprint(config: BuildConfig, tree: Path) -> str:
    """Hash of everything that decides the build's outputs."""
    digest = hashlib.sha256(CAFFE_SHA256.encode())
    digest.update(makefile_config(config).encode())
    for relative in sorted(splice_destinations()) + ["src/caffe/proto/caffe.proto"]:
        digest.update(relative.encode())
        digest.update((tree / relative).read_bytes())
    for module in (Path(__file__), Path(caffe_patches.__file__),
                   Path(cpu_speedups.__file__)):
        digest.update(module.read_bytes())
    return digest.hexdigest()


def build_outputs(tree: Path) -> list[Path]:
    return [tree / "build/lib" / LIBCAFFE, tree / "python/caffe/_caffe.so",
            tree / "build/tools/caffe.bin", tree / "build/test" / TEST_BINARY]


def run_make(config: BuildConfig, tree: Path) -> None:
    """Build libcaffe, the tools, pycaffe and our C++ layer tests."""
    write_if_changed(tree / "Makefile.config", makefile_config(config).encode())
    stamp = tree / BUILD_STAMP
    fingerprint = input_fingerprint(config, tree)
    if stamp.exists() and stamp.read_text() == fingerprint and all(
            path.exists() for path in build_outputs(tree)):
        log.info("caffe build is up to date (%s)", tree)
        return
    stamp.unlink(missing_ok=True)
    make = ["make", f"-j{config.jobs}"]
    log.info("building caffe in %s with %s", tree, " ".join(make))
    subprocess.run(make + ["all", "pycaffe"], cwd=tree, check=True)
    # Separately: Caffe's rule for test objects lacks the generated proto header as a
    # prerequisite, so in one parallel make they can compile before it exists.
    subprocess.run(make + [f".build_release/test/{TEST_BINARY}"], cwd=tree, check=True)
    stamp.write_text(fingerprint)


def site_packages(venv: Path) -> Path:
    major, minor = sys.version_info[:2]
    return venv / "lib" / f"python{major}.{minor}" / "site-packages"


def set_rpath(binary: Path, rpath: str) -> None:
    subprocess.run(["patchelf", "--set-rpath", rpath, str(binary)], check=True)


def copy_if_changed(source: Path, target: Path) -> None:
    write_if_changed(target, source.read_bytes())
    shutil.copymode(source, target)


def install(tree: Path, venv: Path) -> None:
    """Install pycaffe, libcaffe, the caffe tool and the test binary into ``venv``."""
    libdir = venv / "lib"
    libexec = venv / "libexec" / "ssn-caffe"
    package = site_packages(venv) / "caffe"
    python_libdir = sysconfig.get_config_var("LIBDIR")

    copy_if_changed(tree / "build/lib" / LIBCAFFE, libdir / LIBCAFFE)
    set_rpath(libdir / LIBCAFFE, f"$ORIGIN:{python_libdir}")
    for source in (tree / "python/caffe").rglob("*"):
        if source.is_file() and "__pycache__" not in source.parts:
            copy_if_changed(source, package / source.relative_to(tree / "python/caffe"))
    set_rpath(package / "_caffe.so", f"$ORIGIN/../../..:{python_libdir}")
    for name, binary in (("caffe.bin", tree / "build/tools/caffe.bin"),
                         (TEST_BINARY, tree / "build/test" / TEST_BINARY)):
        copy_if_changed(binary, libexec / name)
        set_rpath(libexec / name, f"$ORIGIN/../../lib:{python_libdir}")
    write_caffe_wrapper(venv, libexec / "caffe.bin")
    write_if_changed(site_packages(venv) / THREADS_PTH, THREADS_PTH_LINE.encode())


# OpenBLAS's threads spin after each BLAS call (Caffe's Softmax uses gemm) and
# OpenMP's spin while they wait: both on 2 cores made an SSN iteration about
# 1.8x slower than one thread. Passive OpenMP threads sleep instead. A .pth
# line runs when the venv's Python starts, before libgomp reads its settings.
OMP_WAIT_POLICY = "PASSIVE"
THREADS_PTH = "ssn_caffe_threads.pth"
THREADS_PTH_LINE = ("import os; os.environ.setdefault('OMP_WAIT_POLICY', "
                    f"'{OMP_WAIT_POLICY}')  # written by ssn/build.py\n")


SITECUSTOMIZE = """\
# Written by ssn/build.py for <venv>/bin/caffe: the embedded Python of Caffe's
# tool adds the venv's site-packages the way the venv's python does, .pth files
# (editable installs) included.
import os
import site

site.addsitedir(os.environ["SSN_CAFFE_SITE_PACKAGES"])
"""


def write_caffe_wrapper(venv: Path, binary: Path) -> None:
    """``<venv>/bin/caffe``: the real tool, seeing the venv's Python packages.

    The tool embeds Python for Python layers; without this it would see only the
    base interpreter's site-packages. A directory on PYTHONPATH does not get its
    .pth files read, so a sitecustomize module adds site-packages as a site dir.
    """
    hook_dir = binary.parent / "pysite"
    write_if_changed(hook_dir / "sitecustomize.py", SITECUSTOMIZE.encode())
    wrapper = venv / "bin" / "caffe"
    script = (
        "#!/bin/sh\n"
        "# Written by ssn/build.py: runs Caffe's command-line tool with this venv's\n"
        "# packages visible to Python layers.\n"
        'here="$(cd "$(dirname "$0")/.." && pwd)"\n'
        f'OMP_WAIT_POLICY="${{OMP_WAIT_POLICY:-{OMP_WAIT_POLICY}}}" \\\n'
        f'SSN_CAFFE_SITE_PACKAGES="$here/{site_packages(venv).relative_to(venv)}" \\\n'
        f'PYTHONPATH="$here/{hook_dir.relative_to(venv)}${{PYTHONPATH:+:$PYTHONPATH}}" \\\n'
        f'  exec "$here/{binary.relative_to(venv)}" "$@"\n')
    write_if_changed(wrapper, script.encode())
    wrapper.chmod(0o755)


def build(config: BuildConfig) -> Path:
    """Fetch, splice, build and install (with ssn/native); return the Caffe tree used."""
    tarball = fetch_source(config.cache)
    tree = tree_dir(config)
    unpack(tarball, tree, config.gpu)
    restore_finetuning(tree)
    fix_crop_copy(tree)
    apply_cpu_speedups(tree)
    changed = splice(tree)
    if changed:
        log.info("spliced %d changed file(s): %s", len(changed), ", ".join(changed))
    run_make(config, tree)
    install(tree, config.venv)
    build_native(config.venv / "lib")
    return tree


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m ssn.build\n  python -m ssn.build --gpu --jobs 8\n"
               "  python -m ssn.build --check-cuda\n"
               "  python -m ssn.build --gpu --venv /tmp/gpu-venv --pack .gpu-pack/ssn-gpu.tar.xz\n")
    parser.add_argument("--venv", type=Path, default=Path(sys.prefix),
                        help="virtual environment to install into (default: the running one)")
    parser.add_argument("--cache", type=Path, default=default_cache(),
                        help="download and build cache (default: $SSN_CAFFE_CACHE or "
                             "~/.cache/ssn-caffe)")
    parser.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=False,
                        help="build the CUDA paths (needs nvcc)")
    parser.add_argument("--jobs", "-j", type=int, default=os.cpu_count() or 2,
                        help="parallel make jobs")
    parser.add_argument("--pack", type=Path, metavar="TARBALL",
                        help="after building, write TARBALL (.tar.xz) with what "
                             "tools/gpu_check.sh needs on a bare GPU machine (use with --gpu)")
    parser.add_argument("--check-cuda", action="store_true",
                        help="only compile our cuda/*.cu with nvcc -c against the CPU build "
                             "tree, then exit (skipped without nvcc)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.check_cuda:
        return check_cuda_compile(args.cache.resolve(), args.jobs)
    if sys.prefix == sys.base_prefix and args.venv == Path(sys.prefix):
        log.error("run this inside a virtual environment, or pass --venv")
        return 2
    config = BuildConfig(venv=args.venv.resolve(), cache=args.cache.resolve(),
                         gpu=args.gpu, jobs=args.jobs)
    try:
        tree = build(config)
        if args.pack is not None:
            from ssn.gpu_pack import pack  # it imports this module
            pack(tree, config.venv, args.pack.resolve())
    except (subprocess.CalledProcessError, RuntimeError, ValueError, OSError) as error:
        log.error("build failed: %s", error)
        return 1
    log.info("installed caffe from %s into %s", tree, config.venv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
