"""``python -m ssn_build``: fetch, patch, splice, build and install Caffe with the SSN layers.

The Caffe tree lives in a cache outside the checkout (``$SSN_CAFFE_CACHE``,
default ``~/.cache/ssn-caffe``), one per source, flavour, Python/numpy ABI and
configuration, shared by every checkout on the machine. On each run the files
our patches touch are restored from the tarball and ``patches/caffe/series`` is
applied again, our layers are copied in where they changed, and make rebuilds
what that changed; a stamp over every input skips make when nothing did.
"""
from __future__ import annotations

import argparse
import logging
import os
import subprocess
import sys
from pathlib import Path

from ssn_build.cuda_check import check_cuda_compile
from ssn_build.install import install
from ssn_build.make import BuildConfig, MakeError, default_cache, run_make, tree_dir, unpack
from ssn_build.native import build_native
from ssn_build.patches import PatchError, apply_series
from ssn_build.source import PATCH_DIR, fetch_source
from ssn_build.splice import HEADER_SUFFIXES, splice, touch_includers

log = logging.getLogger("ssn_build")
BUILD_LOG = "logs/caffe-build.log"  # under the venv: make's full output


def build(config: BuildConfig) -> Path:
    """Fetch, patch, splice, build and install (with ssn/native); return the Caffe tree."""
    tarball = fetch_source(config.cache)
    tree = tree_dir(config)
    unpack(tarball, tree)
    patched = apply_series(tree, tarball, PATCH_DIR)
    touch_includers(tree, [name for name in patched if name.endswith(HEADER_SUFFIXES)])
    changed = splice(tree, tarball)
    if changed:
        log.info("spliced %d changed file(s): %s", len(changed), ", ".join(changed))
    run_make(config, tree, config.venv / BUILD_LOG)
    install(tree, config.venv)
    build_native(config.venv / "lib")
    return tree


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m ssn_build", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog="examples:\n  python -m ssn_build\n  python -m ssn_build --gpu --jobs 8\n"
               "  python -m ssn_build --check-cuda\n"
               "  python -m ssn_build --gpu --venv /tmp/gpu-venv --pack .gpu-pack/ssn-gpu.tar.xz\n")
    parser.add_argument("--venv", type=Path, default=Path(sys.prefix),
                        help="virtual environment to install into (default: the running one)")
    parser.add_argument("--cache", type=Path, default=default_cache(),
                        help="download and build cache (default: $SSN_CAFFE_CACHE or "
                             "~/.cache/ssn-caffe)")
    parser.add_argument("--gpu", action=argparse.BooleanOptionalAction, default=False,
                        help="build the CUDA paths (needs nvcc)")
    parser.add_argument("--cudnn", action=argparse.BooleanOptionalAction, default=True,
                        help="with --gpu: cuDNN's convolutions, pooling and activations "
                             "(USE_CUDNN; needs cudnn.h, cuDNN 8 or 9)")
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
                         gpu=args.gpu, cudnn=args.cudnn, jobs=args.jobs)
    try:
        tree = build(config)
        if args.pack is not None:
            from ssn_build.gpu_pack import pack
            pack(tree, config.venv, args.pack.resolve())
    except (subprocess.CalledProcessError, PatchError, MakeError, RuntimeError, ValueError,
            OSError) as error:
        log.error("build failed: %s", error)
        return 1
    log.info("installed caffe from %s into %s", tree, config.venv)
    return 0
