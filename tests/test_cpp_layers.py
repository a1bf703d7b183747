"""Runs the C++ layer tests (Caffe's GradientChecker, spec vectors), one pytest case each."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

TEST_BINARY = Path(sys.prefix) / "libexec" / "ssn-caffe" / "test_ssn_layers.testbin"


def gtest_names() -> list[str]:
    if not TEST_BINARY.exists():
        return ["<missing test binary>"]
    listing = subprocess.run([str(TEST_BINARY), "--gtest_list_tests"], capture_output=True,
                             text=True, check=True).stdout
    names, suite = [], ""
    for line in listing.splitlines():
        if not line.startswith(" "):
            suite = line.split("#")[0].strip()
        else:
            names.append(suite + line.split("#")[0].strip())
    return names


@pytest.mark.parametrize("name", gtest_names())
def test_cpp(name):
    assert TEST_BINARY.exists(), f"{TEST_BINARY} is missing: run python -m ssn.build"
    env = dict(os.environ, GLOG_minloglevel="2")
    result = subprocess.run([str(TEST_BINARY), f"--gtest_filter={name}"], capture_output=True,
                            text=True, env=env)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert "[  PASSED  ] 1 test" in result.stdout
