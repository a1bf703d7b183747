"""The GPU-check pack: what a bare CUDA machine needs to run tools/gpu_check.sh.

``python -m ssn_build --gpu --venv /tmp/gpu-venv --pack .gpu-pack/ssn-gpu.tar.xz``
"""
from __future__ import annotations

import logging
import re
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from pathlib import Path

from ssn.atomic import atomic_path
from ssn_build.install import site_packages
from ssn_build.make import LAYER_TEST_BINARIES, LIBCAFFE

log = logging.getLogger("ssn_build")


# Shared libraries a GPU machine's own system or CUDA install provides; the pack
# leaves them out (the CUDA libraries are found there by tools/gpu_check.sh).
PACK_SYSTEM_LIBS = ("linux-vdso", "ld-linux", "libc.so", "libm.so", "libpthread", "libdl.so",
                    "librt.so", "libstdc++", "libgcc_s", "libcuda.so", "libcudart",
                    "libcublas", "libcurand", "libcudnn")
# Parts of the standard library and site-packages the GPU checks never import.
PACK_SKIPPED_DIRS = {"__pycache__", "test", "tests", "idlelib", "tkinter", "turtledemo",
                     "ensurepip", "lib2to3", "pydoc_data", "site-packages", "dist-packages"}
PACK_PACKAGES = ("caffe", "numpy", "numpy.libs", "google", "six.py", "pytest", "_pytest",
                 "pluggy", "iniconfig", "packaging", "pygments", "py.py")
PACK_DISTRIBUTIONS = {"numpy", "protobuf", "six", "pytest", "pluggy", "iniconfig", "packaging",
                      "pygments"}
# pycaffe's caffe.io imports scikit-image and SciPy for its image helpers only, and
# ssn.bsds SciPy's .mat reader; the pack holds stand-ins (far smaller than the real
# packages) that raise when used.
PACK_STUB_NOTE = ('"""Stand-in written by ssn_build --pack: the GPU-check pack leaves out '
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
    # ssn.bsds (imported by the tests' conftest) reads ground truth with scipy.io.
    "scipy/io.py": PACK_STUB_NOTE.format(package="SciPy") + (
        "\n\ndef __getattr__(name):\n"
        "    raise ImportError(f'scipy.io.{name}: not in the ssn GPU-check pack')\n"),
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
        binaries = {name: tree / "build/test" / name for name in LAYER_TEST_BINARIES}
        binaries.update({"caffe.bin": tree / "build/tools/caffe.bin", version: interpreter})
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
        with atomic_path(target) as partial, \
                tarfile.open(partial, "w:xz", preset=6) as archive:
            archive.add(root, arcname="ssn-gpu")
    log.info("packed %s (%.1f MiB)", target, target.stat().st_size / 2**20)
