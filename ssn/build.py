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

# Generated files the sdist ships for an older protoc; protoc 3.21 remakes them.
STALE_GENERATED = (
    "include/caffe/proto/caffe.pb.h",
    "src/caffe/proto/caffe.pb.cc",
    "python/caffe/proto/caffe_pb2.py",
)
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


def patch_source_tree(tree: Path, gpu: bool = False) -> None:
    """Fix the sdist's defects that break a plain Makefile build.

    A GPU tree also gets :func:`patch_gpu_sources`.
    """
    for relative in STALE_GENERATED:
        (tree / relative).unlink(missing_ok=True)
    makefile = tree / "Makefile"
    # `BUILD_DIR = temp` overrides Makefile.config and breaks pycaffe's rpath.
    text = makefile.read_text()
    makefile.write_text(re.sub(r"(?m)^BUILD_DIR = temp\n", "", text))
    bbox_test = tree / "src/caffe/test/test_bbox_util.cpp"
    if bbox_test.exists():
        lines = bbox_test.read_text().splitlines(keepends=True)
        bbox_test.write_text("".join(line for line in lines if line.strip() != "cmake"))
    (tree / "Makefile.config").unlink(missing_ok=True)
    if gpu:
        patch_gpu_sources(tree)


# SSD-branch layers whose headers declare GPU functions that no .cu defines.
# Their .cpp defines them (STUB_GPU) only under CPU_ONLY, so a GPU link fails
# unless the declarations are CPU_ONLY too; without them the layers inherit
# Layer's GPU methods, which run the CPU code.
GPU_LESS_HEADERS = {
    "relu6_layer.hpp": ("Forward", "Backward"),
    "upsample_layer.hpp": ("Forward", "Backward"),
    "hardswish_layer.hpp": ("Forward", "Backward"),
    "hardsigmoid_layer.hpp": ("Forward", "Backward"),
    "maxunpool_layer.hpp": ("Forward", "Backward"),
    "pixelshuffle_layer.hpp": ("Forward", "Backward"),
    "proposal_layer.hpp": ("Backward",),  # proposal_layer.cu has the forward
}
GPU_GUARD = "#ifdef CPU_ONLY  // ssn/build.py: no GPU definition in this source\n"

# Caffe::DeviceQuery's reads of cudaDeviceProp fields that CUDA 13 removed.
REMOVED_DEVICE_PROPS = {
    "prop.clockRate": '"n/a (CUDA 13)"',
    '(prop.deviceOverlap ? "Yes" : "No")': '(prop.asyncEngineCount > 0 ? "Yes" : "No")',
    '(prop.kernelExecTimeoutEnabled ? "Yes" : "No")': '"n/a (CUDA 13)"',
}


def patch_text(path: Path, edit) -> None:
    """Apply ``edit`` (text -> text) to ``path``, writing only on a change."""
    text = path.read_text()
    write_if_changed(path, edit(text).encode())


def guard_gpu_declarations(text: str, passes: tuple[str, ...]) -> str:
    """Wrap the ``<pass>_gpu`` declarations of a header in ``#ifdef CPU_ONLY``.

    Declarations already wrapped are left alone, so applying it twice is a no-op.
    """
    for name in passes:
        pattern = re.compile(rf"(?m)(?<!{re.escape(GPU_GUARD)})"
                             rf"^[ \t]*virtual void {name}_gpu\([^;]*\);\n")
        text = pattern.sub(lambda match: GPU_GUARD + match.group(0) + "#endif\n", text)
    return text


def patch_gpu_sources(tree: Path) -> None:
    """Source fixes a CUDA 13 (nvcc 13) build of this sdist needs; idempotent.

    * ``common.cpp`` reads cudaDeviceProp fields that CUDA 13 removed;
    * SSD-branch headers declare GPU methods without a .cu (see
      ``GPU_LESS_HEADERS``): the declarations become CPU_ONLY;
    * ``proposal_layer.cu`` defines only the forward, so it instantiates only
      the forward.

    cuDNN stays off; the architectures are set in :func:`gpu_config_lines`.
    """
    def fix_props(text: str) -> str:
        for removed, replacement in REMOVED_DEVICE_PROPS.items():
            text = text.replace(removed, replacement)
        return text

    patch_text(tree / "src/caffe/common.cpp", fix_props)
    for header, passes in GPU_LESS_HEADERS.items():
        path = tree / "include/caffe/layers" / header
        if path.exists():
            patch_text(path, lambda text, passes=passes: guard_gpu_declarations(text, passes))
    proposal = tree / "src/caffe/layers/proposal_layer.cu"
    if proposal.exists():
        patch_text(proposal, lambda text: text.replace(
            "INSTANTIATE_LAYER_GPU_FUNCS(ProposalLayer);",
            "INSTANTIATE_LAYER_GPU_FORWARD(ProposalLayer);"))


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


def write_if_changed(path: Path, content: bytes) -> bool:
    """Write ``content`` unless ``path`` already holds it (keeps make's mtimes)."""
    if path.exists() and path.read_bytes() == content:
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(content)
    tmp.replace(path)
    return True


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


FINETUNE_MARKER = "ssn/build.py: copy --weights"
FINETUNE_ANCHOR = "  solver->SetActionFunction(signal_handler.GetActionFunction());\n"
FINETUNE_CODE = (
    "  if (FLAGS_weights.size()) {  // " + FINETUNE_MARKER + " (BVLC's finetuning)\n"
    "    LOG(INFO) << \"Finetuning from \" << FLAGS_weights;\n"
    "    solver->net()->CopyTrainedLayersFrom(FLAGS_weights);\n"
    "    for (int i = 0; i < solver->test_nets().size(); ++i) {\n"
    "      solver->test_nets()[i]->CopyTrainedLayersFrom(FLAGS_weights);\n"
    "    }\n"
    "  }\n")


CROP_MARKER = "ssn/build.py: one copy per row"
CROP_SLOW = """    // We are at the last dimensions, which is stored continously in memory
    for (int i = 0; i < top[0]->shape(cur_dim); ++i) {
      // prepare index vector reduced(red) and with offsets(off)
      std::vector<int> ind_red(cur_dim, 0);
      std::vector<int> ind_off(cur_dim+1, 0);
      for (int j = 0; j < cur_dim; ++j) {
          ind_red[j] = indices[j];
          ind_off[j] = indices[j] + offsets[j];
      }
      ind_off[cur_dim] = offsets[cur_dim];
      // do the copy
      if (is_forward) {
        caffe_copy(top[0]->shape(cur_dim),
            src_data + bottom[0]->offset(ind_off),
            dest_data + top[0]->offset(ind_red));
      } else {
        // in the backwards pass the src_data is top_diff
        // and the dest_data is bottom_diff
        caffe_copy(top[0]->shape(cur_dim),
            src_data + top[0]->offset(ind_red),
            dest_data + bottom[0]->offset(ind_off));
      }
    }
"""
CROP_FAST = """    // The last axis is contiguous: copy it once (""" + CROP_MARKER + """;
    // the sdist repeated the same copy once per element of that axis).
    std::vector<int> ind_red(cur_dim, 0);
    std::vector<int> ind_off(cur_dim+1, 0);
    for (int j = 0; j < cur_dim; ++j) {
      ind_red[j] = indices[j];
      ind_off[j] = indices[j] + offsets[j];
    }
    ind_off[cur_dim] = offsets[cur_dim];
    if (is_forward) {
      caffe_copy(top[0]->shape(cur_dim),
          src_data + bottom[0]->offset(ind_off),
          dest_data + top[0]->offset(ind_red));
    } else {
      caffe_copy(top[0]->shape(cur_dim),
          src_data + top[0]->offset(ind_red),
          dest_data + bottom[0]->offset(ind_off));
    }
"""


def fix_crop_copy(tree: Path) -> None:
    """Make the CPU Crop layer copy each row once.

    This sdist's crop_copy loops over the last axis and repeats the same row
    copy W times: the two Crops of the SSN feature CNN took about 0.7 s each
    on a 481x321 image. Idempotent.
    """
    source = tree / "src/caffe/layers/crop_layer.cpp"
    text = source.read_text()
    if CROP_MARKER in text:
        return
    if CROP_SLOW not in text:
        raise RuntimeError(f"{source}: the row-copy loop to fix was not found")
    write_if_changed(source, text.replace(CROP_SLOW, CROP_FAST).encode())


def restore_finetuning(tree: Path) -> None:
    """Make ``caffe train --weights`` copy the weights again.

    This sdist's tools/caffe.cpp accepts --weights for training but never uses
    it (BVLC Caffe copies them into the train and test nets). Idempotent.
    """
    source = tree / "tools/caffe.cpp"
    text = source.read_text()
    if FINETUNE_MARKER in text:
        return
    if FINETUNE_ANCHOR not in text:
        raise RuntimeError(f"{source}: cannot find where to restore --weights")
    write_if_changed(source, text.replace(FINETUNE_ANCHOR, FINETUNE_ANCHOR + FINETUNE_CODE)
                     .encode())


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
    digest.update(Path(__file__).read_bytes())
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
    subprocess.run(make + ["all", "pycaffe", f".build_release/test/{TEST_BINARY}"],
                   cwd=tree, check=True)
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
    changed = splice(tree)
    if changed:
        log.info("spliced %d changed file(s): %s", len(changed), ", ".join(changed))
    run_make(config, tree)
    install(tree, config.venv)
    build_native(config.venv / "lib")
    return tree


# Shared libraries a GPU machine's own system or CUDA install provides; the pack
# leaves them out (the CUDA libraries are found there by tools/gpu_check.sh).
PACK_SYSTEM_LIBS = ("linux-vdso", "ld-linux", "libc.so", "libm.so", "libpthread", "libdl.so",
                    "librt.so", "libstdc++", "libgcc_s", "libcuda.so", "libcudart",
                    "libcublas", "libcurand")
# Parts of the standard library and site-packages the GPU checks never import.
PACK_SKIPPED_DIRS = {"__pycache__", "test", "tests", "idlelib", "tkinter", "turtledemo",
                     "ensurepip", "lib2to3", "pydoc_data", "site-packages", "dist-packages"}
PACK_PACKAGES = ("caffe", "numpy", "numpy.libs", "google", "six.py", "pytest", "_pytest",
                 "pluggy", "iniconfig", "packaging", "pygments", "py.py")
PACK_DISTRIBUTIONS = {"numpy", "protobuf", "six", "pytest", "pluggy", "iniconfig", "packaging",
                      "pygments"}
# pycaffe's caffe.io imports scikit-image and SciPy for its image helpers only;
# the pack holds stand-ins (far smaller than the real packages) that raise when used.
PACK_STUB_NOTE = ('"""Stand-in written by ssn/build.py --pack: the GPU-check pack leaves out '
                  '{package}, which\npycaffe\'s caffe.io imports for its image helpers; '
                  'using them raises ImportError."""\n')
PACK_STUBS = {
    "skimage/__init__.py": PACK_STUB_NOTE.format(package="scikit-image"),
    "skimage/io.py": PACK_STUB_NOTE.format(package="scikit-image") + (
        "\n\ndef __getattr__(name):\n"
        "    raise ImportError(f'skimage.io.{name}: not in the ssn GPU-check pack')\n"),
    "scipy/__init__.py": PACK_STUB_NOTE.format(package="SciPy"),
    "scipy/ndimage.py": PACK_STUB_NOTE.format(package="SciPy") + (
        "\n\ndef zoom(*args, **kwargs):\n"
        "    raise ImportError('scipy.ndimage.zoom: not in the ssn GPU-check pack')\n"),
}


def shared_libraries(binaries: list[Path]) -> set[Path]:
    """The ``ldd`` closure of ``binaries``, less PACK_SYSTEM_LIBS."""
    found: set[Path] = set()
    for binary in binaries:
        listing = subprocess.run(["ldd", str(binary)], capture_output=True, text=True,
                                 check=True).stdout
        for line in listing.splitlines():
            match = re.match(r"\s*(\S+) => (/\S+)", line)
            if match and not match.group(1).startswith(PACK_SYSTEM_LIBS):
                found.add(Path(match.group(2)))
    return found


def pack(tree: Path, venv: Path, target: Path) -> None:
    """Write ``target`` (.tar.xz): what a bare CUDA machine needs for tools/gpu_check.sh.

    Layout under ``ssn-gpu/``: ``bin/`` the C++ layer tests, the caffe tool and
    this Python's interpreter; ``lib/`` libcaffe and the shared libraries it,
    pycaffe and the interpreter need (not libc, libstdc++ or CUDA's); ``lib/
    python3.X/`` the standard library and, in its site-packages, pycaffe from
    ``venv``, numpy, protobuf, six and pytest from the running Python.
    """
    with tempfile.TemporaryDirectory() as scratch:
        root = Path(scratch) / "ssn-gpu"
        version = f"python{sys.version_info.major}.{sys.version_info.minor}"
        stdlib = Path(sysconfig.get_paths()["stdlib"])
        interpreter = Path(sys.executable).resolve()
        pylib = root / "lib" / version
        binaries = {"test_ssn_layers.testbin": tree / "build/test" / TEST_BINARY,
                    "caffe.bin": tree / "build/tools/caffe.bin", version: interpreter}
        for name, binary in binaries.items():
            (root / "bin").mkdir(parents=True, exist_ok=True)
            shutil.copy2(binary, root / "bin" / name)
        shutil.copytree(stdlib, pylib, symlinks=False,
                        ignore=lambda folder, names: [n for n in names if n in PACK_SKIPPED_DIRS
                                                      or n.startswith("config-")])
        packages = pylib / "site-packages"
        packages.mkdir()
        sources = [site_packages(venv)] + [Path(path) for path in sys.path if path]
        for name in PACK_PACKAGES:
            source = next((folder / name for folder in sources if (folder / name).exists()),
                          None)
            if source is None:
                continue
            if source.is_dir():
                shutil.copytree(source, packages / name,
                                ignore=shutil.ignore_patterns("__pycache__", "tests"))
            else:
                shutil.copy2(source, packages / name)
        # Their metadata too: pytest finds its plugins' versions through it.
        copied = set()
        for folder in sources:
            for info in sorted(folder.glob("*.dist-info")):
                project = info.name.split("-")[0].lower()
                if project in PACK_DISTRIBUTIONS and project not in copied:
                    copied.add(project)
                    shutil.copytree(info, packages / info.name)
        for relative, text in PACK_STUBS.items():
            (packages / relative).parent.mkdir(parents=True, exist_ok=True)
            (packages / relative).write_text(text)
        elves = [binary for binary in binaries.values()] + [tree / "build/lib" / LIBCAFFE]
        elves += sorted((pylib / "lib-dynload").glob("*.so"))
        elves += sorted((packages / "caffe").glob("*.so"))
        for library in sorted(shared_libraries(elves)):
            shutil.copy2(library, root / "lib" / library.name)
        shutil.copy2(tree / "build/lib" / LIBCAFFE, root / "lib" / LIBCAFFE)
        for library in (root / "lib").glob("*.so*"):
            library.chmod(0o755)
            subprocess.run(["strip", "--strip-unneeded", str(library)], check=False)
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".tmp")
        with tarfile.open(partial, "w:xz", preset=6) as archive:
            archive.add(root, arcname="ssn-gpu")
        partial.replace(target)
    log.info("packed %s (%.1f MiB)", target, target.stat().st_size / 2**20)


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
            pack(tree, config.venv, args.pack.resolve())
    except (subprocess.CalledProcessError, RuntimeError, ValueError, OSError) as error:
        log.error("build failed: %s", error)
        return 1
    log.info("installed caffe from %s into %s", tree, config.venv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
