"""The GPU-check pack's Python holds enough for what tools/gpu_check.sh imports there."""
import os
import subprocess
import sys
import textwrap

import pytest

from ssn_build.gpu_pack import PACK_PACKAGES, PACK_STUBS

# What tools/gpu_check.sh runs with the pack's interpreter.
GPU_CHECK_IMPORTS = ("tests.conftest", "tests.test_gpu", "ssn.cli.bench_layers")
# Beside the pack's packages: our own code, and pycaffe's compiled parts and the
# standard library, which are in the pack too.
OWN = ("ssn", "tests", "caffe", "google")


def blocking_sitecustomize(allowed: set[str]) -> str:
    """A sitecustomize.py that refuses imports of top-level names outside ``allowed``."""
    return textwrap.dedent(f"""\
        import importlib.abc, sys
        ALLOWED = {sorted(allowed)!r}
        class NotInPack(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path, target=None):
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in ALLOWED or top.startswith("_"):
                    return None
                raise ImportError(f"{{name}} is not in the GPU-check pack")
        sys.meta_path.insert(0, NotInPack())
        """)


@pytest.mark.slow
@pytest.mark.parametrize("module", GPU_CHECK_IMPORTS)
def test_gpu_checks_import_with_only_the_packed_packages(tmp_path, repo_root, module):
    for relative, text in PACK_STUBS.items():
        (tmp_path / relative).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / relative).write_text(text)
    allowed = {name.split(".")[0].removesuffix(".py") for name in PACK_PACKAGES}
    allowed |= set(OWN) | {relative.split("/")[0] for relative in PACK_STUBS}
    (tmp_path / "sitecustomize.py").write_text(blocking_sitecustomize(allowed))
    env = dict(os.environ, PYTHONPATH=f"{tmp_path}{os.pathsep}{repo_root}")
    result = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=repo_root,
                            env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_the_blocker_refuses_what_the_pack_lacks(tmp_path, repo_root):
    (tmp_path / "sitecustomize.py").write_text(blocking_sitecustomize({"numpy"}))
    env = dict(os.environ, PYTHONPATH=str(tmp_path))
    result = subprocess.run([sys.executable, "-c", "import h5py"], env=env,
                            capture_output=True, text=True, timeout=120)
    assert "not in the GPU-check pack" in result.stderr
