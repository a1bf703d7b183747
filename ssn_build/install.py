"""Install the built Caffe into a virtual environment.

The ``caffe`` Python package goes into its site-packages, ``libcaffe.so`` into
``<venv>/lib``, the ``caffe`` command-line tool (behind a wrapper) into
``<venv>/bin`` and the C++ layer tests into ``<venv>/libexec/ssn-caffe``.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

from ssn.atomic import write_if_changed
from ssn_build.make import CAFFE_TOOLS, LIBCAFFE, TEST_BINARIES


def site_packages(venv: Path) -> Path:
    major, minor = sys.version_info[:2]
    return venv / "lib" / f"python{major}.{minor}" / "site-packages"


def set_rpath(binary: Path, rpath: str) -> None:
    subprocess.run(["patchelf", "--set-rpath", rpath, str(binary)], check=True)


def copy_if_changed(source: Path, target: Path) -> None:
    write_if_changed(target, source.read_bytes())
    shutil.copymode(source, target)


def install(tree: Path, venv: Path) -> None:
    """Install pycaffe, libcaffe, the caffe tool and the test binaries into ``venv``."""
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
    binaries = [(f"{tool}.bin", tree / f"build/tools/{tool}.bin") for tool in CAFFE_TOOLS]
    binaries += [(name, tree / "build/test" / name) for name in TEST_BINARIES]
    for stale in set(path.name for path in libexec.glob("test_*.testbin")) - set(TEST_BINARIES):
        (libexec / stale).unlink()  # a test file since removed or renamed
    for name, binary in binaries:
        copy_if_changed(binary, libexec / name)
        set_rpath(libexec / name, f"$ORIGIN/../../lib:{python_libdir}")
    for tool in CAFFE_TOOLS:
        write_caffe_wrapper(venv, libexec / f"{tool}.bin", tool)
    write_if_changed(site_packages(venv) / THREADS_PTH, THREADS_PTH_LINE.encode())
    cpu_only = "CPU_ONLY := 1" in (tree / "Makefile.config").read_text()
    write_if_changed(package / "_ssn_build.py", BUILD_INFO.format(cpu_only=cpu_only).encode())


# Read by ssn.device, which must refuse a GPU before a CPU-only Caffe aborts on it.
BUILD_INFO = '''"""How the ssn_build tool built this Caffe."""
CPU_ONLY = {cpu_only}
'''


# OpenBLAS's threads spin after each BLAS call (Caffe's Softmax uses gemm) and
# OpenMP's spin while they wait: both on 2 cores made an SSN iteration about
# 1.8x slower than one thread. Passive OpenMP threads sleep instead. A .pth
# line runs when the venv's Python starts, before libgomp reads its settings.
OMP_WAIT_POLICY = "PASSIVE"
THREADS_PTH = "ssn_caffe_threads.pth"
THREADS_PTH_LINE = ("import os; os.environ.setdefault('OMP_WAIT_POLICY', "
                    f"'{OMP_WAIT_POLICY}')  # written by ssn_build\n")


SITECUSTOMIZE = """\
# Written by the ssn_build tool for <venv>/bin/caffe: the embedded Python of Caffe's
# tool adds the venv's site-packages the way the venv's python does, .pth files
# (editable installs) included.
import os
import site

site.addsitedir(os.environ["SSN_CAFFE_SITE_PACKAGES"])
"""


def write_caffe_wrapper(venv: Path, binary: Path, name: str = "caffe") -> None:
    """``<venv>/bin/<name>``: the real tool, seeing the venv's Python packages.

    The tool embeds Python for Python layers; without this it would see only the
    base interpreter's site-packages. A directory on PYTHONPATH does not get its
    .pth files read, so a sitecustomize module adds site-packages as a site dir.
    """
    hook_dir = binary.parent / "pysite"
    write_if_changed(hook_dir / "sitecustomize.py", SITECUSTOMIZE.encode())
    wrapper = venv / "bin" / name
    script = (
        "#!/bin/sh\n"
        "# Written by the ssn_build tool: runs Caffe's command-line tool with this venv's\n"
        "# packages visible to Python layers.\n"
        'here="$(cd "$(dirname "$0")/.." && pwd)"\n'
        f'OMP_WAIT_POLICY="${{OMP_WAIT_POLICY:-{OMP_WAIT_POLICY}}}" \\\n'
        f'SSN_CAFFE_SITE_PACKAGES="$here/{site_packages(venv).relative_to(venv)}" \\\n'
        f'PYTHONPATH="$here/{hook_dir.relative_to(venv)}${{PYTHONPATH:+:$PYTHONPATH}}" \\\n'
        f'  exec "$here/{binary.relative_to(venv)}" "$@"\n')
    write_if_changed(wrapper, script.encode())
    wrapper.chmod(0o755)
