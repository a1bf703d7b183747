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
        "file not found", or "cannot read image: <why>" (empty, truncated, not an image).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError("file not found")
    try:
        image = skio.imread(path)
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad file
        raise ValueError(f"cannot read image: {unreadable_reason(path, error)}") from error
    return as_rgb(image)


def unreadable_reason(path: Path, error: Exception) -> str:
    """Why an image file did not read, in terms of the file.

    imageio answers a file whose bytes no reader recognises (a corrupt or
    truncated header, an HTML page saved as .jpg) with "Could not find a backend
    ... pip install ...", which reads like a missing package; say what it means.
    """
    message = str(error)
    if "Could not find a backend" not in message and "cannot identify image" not in message:
        return f"{message} ({type(error).__name__})" if message else type(error).__name__
    try:
        size = path.stat().st_size
        with open(path, "rb") as stream:
            head = stream.read(16)
    except OSError as stat_error:
        return stat_error.strerror or str(stat_error)
    if size == 0:
        return "the file is empty"
    return (f"no image format matches its {size} bytes (they start with {head!r}): the file "
            f"is corrupt, truncated or not a {path.suffix.lstrip('.') or 'image'} file")


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
