"""Image files and pictures: reading any image as RGB, boundary overlays, PNG output."""
from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
from skimage import io as skio
from skimage import segmentation, util

from ssn.atomic import atomic_path

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".ppm", ".pgm"}
BOUNDARY_COLOUR = (1, 1, 0)  # yellow


def as_rgb(image: np.ndarray, keep_uint8: bool = False) -> np.ndarray:
    """An H x W x 3 float image in [0, 1] from grayscale, RGB or RGBA, 8 or 16 bit or float.

    uint8 and other integer types are 8-bit (0..255), uint16 is 16-bit, floats
    must lie in [0, 1]. With ``keep_uint8``, a uint8 image stays uint8 (k stands
    for k / 255, as :func:`ssn.color.rgb_to_lab` takes it), without the conversion.

    Raises
    ------
    ValueError
        If the array is not an image this can convert.
    """
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
        raise ValueError(f"expected an H x W, H x W x 3 or H x W x 4 image, got shape "
                         f"{image.shape}")
    if image.shape[2] == 1:
        image = np.repeat(image, 3, axis=2)
    image = image[:, :, :3]
    if not image.dtype.isnative:  # a big-endian 16-bit TIFF or PNG: values, not bytes
        image = image.astype(image.dtype.newbyteorder("="))
    if image.dtype == np.uint8:
        return image if keep_uint8 else image.astype(np.float32) / 255
    if image.dtype == np.uint16:
        return image.astype(np.float32) / 65535
    if image.dtype == bool or not np.issubdtype(image.dtype, np.number):
        raise ValueError(f"unsupported image dtype {image.dtype}")
    if np.issubdtype(image.dtype, np.integer):
        # Other integer types (int32, int64, ...) carry 8-bit values, as from np.array([...]).
        low, high = (int(image.min()), int(image.max())) if image.size else (0, 0)
        if low < 0 or high > 255:
            raise ValueError(f"{image.dtype} images must hold 8-bit values in 0..255, got "
                             f"{low}..{high} (use uint16 for 16-bit images, or floats in "
                             "[0, 1])")
        return image.astype(np.float32) / 255
    image = image.astype(np.float32)
    if not np.all(np.isfinite(image)):
        raise ValueError("the image holds NaN or infinite values")
    if image.min() < 0 or image.max() > 1:
        raise ValueError(f"float images must lie in [0, 1], got [{image.min():g}, "
                         f"{image.max():g}]")
    return image


def read_image(path: Path) -> np.ndarray:
    """An H x W x 3 float RGB image in [0, 1].

    Raises
    ------
    ValueError
        "file not found", "not a file", "cannot read image: <why>" (a symlink loop, no
        permission, empty, truncated, not an image).
    """
    path = Path(path)
    try:
        is_file = stat.S_ISREG(os.stat(path).st_mode)
    except FileNotFoundError:
        raise ValueError("file not found") from None
    except OSError as error:  # a symlink loop, a name too long, no permission
        raise ValueError(f"cannot read image: {error.strerror or error}") from error
    if not is_file:
        raise ValueError("not a file")
    try:
        image = skio.imread(path)
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad file
        raise ValueError(f"cannot read image: {unreadable_reason(path, error)}") from error
    return as_rgb(image)


def read_mask(path: Path, shape: tuple[int, int]) -> np.ndarray:
    """An H x W bool mask from an image file of any format :func:`read_image` reads:
    true where the pixel is not 0 (in any colour channel; an alpha channel is left out).

    Raises
    ------
    ValueError
        "no mask <path>", "cannot read mask <path>: <why>", or a mask whose size is
        not the image's ``shape`` (H, W).
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"no mask {path}")
    try:
        image = skio.imread(path)
    except Exception as error:  # noqa: BLE001 - any reader failure is a bad file
        raise ValueError(f"cannot read mask {path}: {unreadable_reason(path, error)}"
                         ) from error
    if image.ndim == 3:
        colour = {2: 1, 4: 3}.get(image.shape[2], image.shape[2])  # alpha left out
        mask = (image[:, :, :colour] != 0).any(axis=2)
    elif image.ndim == 2:
        mask = image != 0
    else:
        raise ValueError(f"mask {path} is not a 2-D picture (shape {image.shape})")
    if mask.shape != tuple(shape):
        raise ValueError(f"mask {path} is {mask.shape[0]}x{mask.shape[1]} (H x W), the image "
                         f"{shape[0]}x{shape[1]}")
    return mask


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
