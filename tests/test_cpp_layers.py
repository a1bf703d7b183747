"""Runs the C++ tests, one pytest case each: one binary per SSN layer
(caffe_layers/test/test_<layer>_layer.cpp: hand-worked vectors, Caffe's GradientChecker)
and the helpers' (caffe_layers/util/test_*.cpp: ShiftedConv, the vectorised exp).
CPU-vs-GPU agreement is tests/test_gpu.py's job."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ssn_build.make import TEST_BINARIES

TEST_DIR = Path(sys.prefix) / "libexec" / "ssn-caffe"


def gtest_cases() -> list[tuple[str, str]]:
    """(binary, gtest name) of every test in every binary."""
    cases = []
    for binary in TEST_BINARIES:
        if not (TEST_DIR / binary).exists():
            cases.append((binary, "<missing test binary>"))
            continue
        listing = subprocess.run([str(TEST_DIR / binary), "--gtest_list_tests"],
                                 capture_output=True, text=True, check=True).stdout
        suite = ""
        for line in listing.splitlines():
            if not line.startswith(" "):
                suite = line.split("#")[0].strip()
            else:
                cases.append((binary, suite + line.split("#")[0].strip()))
    return cases


@pytest.mark.slow
@pytest.mark.parametrize("binary, name", gtest_cases(), ids=lambda value: str(value))
def test_cpp(binary, name):
    executable = TEST_DIR / binary
    assert executable.exists(), f"{executable} is missing: run python -m ssn_build"
    env = dict(os.environ, GLOG_minloglevel="2")
    result = subprocess.run([str(executable), f"--gtest_filter={name}"], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "[  PASSED  ] 1 test" in result.stdout
