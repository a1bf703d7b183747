"""Shared fixtures: the checkout's folders, the committed data sample, and BSDS500 itself."""
from __future__ import annotations

from pathlib import Path

import pytest

from ssn.bsds import DATA_ROOT_VARIABLE, DataRootError, data_root

REPO = Path(__file__).resolve().parent.parent
SAMPLE_ROOT = REPO / "data" / "bsds_sample"  # made by tests/make_bsds_sample.py


@pytest.fixture(autouse=True)
def caffe_on_the_cpu():
    """Every test starts with Caffe in CPU mode (the GPU tests switch for themselves)."""
    import caffe
    caffe.set_mode_cpu()


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout these tests belong to (for its committed prototxt, tools and data)."""
    return REPO


@pytest.fixture
def sample_root(monkeypatch) -> Path:
    """The tiny synthetic data set in BSDS500's layout, made the default data root."""
    monkeypatch.setenv(DATA_ROOT_VARIABLE, str(SAMPLE_ROOT))
    return SAMPLE_ROOT


@pytest.fixture
def val_images(sample_root: Path) -> list[Path]:
    """The sample's val images, sorted by name."""
    return sorted((sample_root / "images" / "val").glob("*.jpg"))


@pytest.fixture(scope="session")
def bsds_root() -> Path:
    """The real BSDS500 ($SSN_DATA_ROOT or ./data/BSDS500); skips the test without it."""
    try:
        return data_root()
    except DataRootError as error:
        pytest.skip(f"needs the BSDS500 data set: {error}")
