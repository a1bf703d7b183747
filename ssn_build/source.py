"""Where the build's inputs are: the pinned Caffe sdist and this checkout's sources."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

from ssn.atomic import sha256_of

log = logging.getLogger("ssn_build")

CAFFE_REQUIREMENT = "brocolli-caffe==9.0.2"
CAFFE_SDIST = "brocolli-caffe-9.0.2.tar.gz"
CAFFE_SHA256 = "c6410cc60bdd6db685d441b66be7df05410f8850ac88d6b75d48ef9b2315c08a"

# The build tool runs from a checkout, whose sources it compiles.
CHECKOUT = Path(__file__).resolve().parent.parent
LAYER_DIR = CHECKOUT / "caffe_layers"
CUDA_DIR = CHECKOUT / "cuda"
PATCH_DIR = CHECKOUT / "patches" / "caffe"
NATIVE_DIR = CHECKOUT / "ssn" / "native"
PROTO_FRAGMENT = LAYER_DIR / "ssn.proto"



def fetch_source(cache: Path) -> Path:
    """Download the pinned Caffe sdist into ``cache/downloads`` (once) and verify its hash."""
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
