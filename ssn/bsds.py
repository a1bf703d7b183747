"""BSDS500 on disk: where it is, which images a split has, and one image with its ground truth.

The layout is the official archive's: ``images/<split>/<id>.jpg`` and
``groundTruth/<split>/<id>.mat`` under one root folder, which is (first found)
the ``root`` argument (``--data-root`` in the tools), ``$SSN_DATA_ROOT``, or
``data/BSDS500`` in the current directory.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np
import scipy.io
from skimage import io as skio

DATA_ROOT_VARIABLE = "SSN_DATA_ROOT"
DEFAULT_DATA_ROOT = Path("data") / "BSDS500"


class DataRootError(FileNotFoundError):
    """The BSDS500 folder is missing or does not have the expected layout."""


def data_root(root: Optional[os.PathLike] = None, check: bool = True) -> Path:
    """The BSDS500 folder: ``root``, else ``$SSN_DATA_ROOT``, else ``./data/BSDS500``.

    Raises
    ------
    DataRootError
        With ``check``, if the folder has no ``images`` folder; the message
        names the path and how to point the tools at the data.
    """
    if root is not None:
        path, source = Path(root), "--data-root"
    elif os.environ.get(DATA_ROOT_VARIABLE):
        path, source = Path(os.environ[DATA_ROOT_VARIABLE]), f"${DATA_ROOT_VARIABLE}"
    else:
        path, source = DEFAULT_DATA_ROOT, "the default"
    if check and not (path / "images").is_dir():
        raise DataRootError(
            f"BSDS500 not found at {path} ({source}): expected {path / 'images'} and "
            f"{path / 'groundTruth'}. Pass --data-root DIR (data_root=DIR from Python) or "
            f"set ${DATA_ROOT_VARIABLE}=DIR to the folder that holds them.")
    return path


def read_split(split: str, root: Optional[os.PathLike] = None,
               list_file: Optional[os.PathLike] = None) -> list[str]:
    """Image ids of a split: the lines of ``list_file``, else every ``images/<split>/*.jpg``.

    Ids are sorted by name when listed from the folder.

    Raises
    ------
    DataRootError
        If the data root or the split's folder is missing.
    ValueError
        If no ids are found.
    """
    if list_file is not None:
        path = Path(list_file)
        ids = [line.strip() for line in path.read_text().splitlines() if line.strip()]
    else:
        path = data_root(root) / "images" / split
        if not path.is_dir():
            raise DataRootError(f"{path}: no such split folder")
        ids = sorted(image.stem for image in path.glob("*.jpg"))
    if not ids:
        raise ValueError(f"{path}: no image ids")
    return ids


@dataclass
class BSDSImage:
    """One BSDS500 image with all its human segmentations.

    Attributes
    ----------
    rgb : ndarray, H x W x 3, uint8
    segmentations : list of ndarray, H x W, int
        One label map per annotator (labels from 1).
    """

    rgb: np.ndarray
    segmentations: list


def load_bsds(image_id: str, split: str, root: Optional[os.PathLike] = None) -> BSDSImage:
    """Read ``images/<split>/<id>.jpg`` and ``groundTruth/<split>/<id>.mat``."""
    base = data_root(root)
    rgb = skio.imread(base / "images" / split / f"{image_id}.jpg")
    ground_truth = scipy.io.loadmat(base / "groundTruth" / split / f"{image_id}.mat")
    cells = ground_truth["groundTruth"]
    segmentations = [cells[0, j]["Segmentation"][0, 0].astype(np.int32)
                     for j in range(cells.shape[1])]
    return BSDSImage(rgb=rgb, segmentations=segmentations)
