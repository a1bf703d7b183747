"""Image files and pictures: reading any image as RGB, boundary overlays, PNG output."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from skimage import io as skio
from skimage import segmentation, util

from ssn.atomic import atomic_path
from ssn.inference import as_rgb

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm"}
BOUNDARY_COLOUR = (1, 1, 0)  # yellow


def read_image(path: Path) -> np.ndarray:
    """An H x W x 3 float RGB image in [0, 1].

    Raises
    ------
    ValueError
        "file not found", or "cannot read the image (...)" with the reader's reason.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError("file not found")
    try:
        image = skio.imread(path)
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad file
        raise ValueError(f"cannot read the image ({type(error).__name__}: {error})") from error
    return as_rgb(image)


def overlay(image: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """The image (H x W x 3, any dtype as_rgb takes) as uint8 RGB with label boundaries drawn."""
    rgb = as_rgb(image)
    return util.img_as_ubyte(segmentation.mark_boundaries(rgb, labels, BOUNDARY_COLOUR))


def side_by_side(left: np.ndarray, right: np.ndarray, gap: int = 8) -> np.ndarray:
    """Two uint8 H x W x 3 pictures of one height with a white gap between them."""
    spacer = np.full((left.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([left, spacer, right], axis=1)


def save_png(path: Path, picture: np.ndarray) -> None:
    """Write a picture (uint8 RGB, or uint16 labels) as PNG, atomically."""
    with atomic_path(path) as tmp:
        skio.imsave(tmp, picture, check_contrast=False)


def save_npy(path: Path, array: np.ndarray) -> None:
    """Write an array as .npy, atomically."""
    with atomic_path(path) as tmp:
        np.save(tmp, array)
