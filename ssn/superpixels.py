"""Superpixels of one image with the SSN layers.

The data path: RGB image -> Lab -> pixel features -> SLIC iterations -> labels.
"""
from __future__ import annotations

import numpy as np
from skimage import color

from ssn.net import CheckedNet
from ssn.networks import pixel_ssn_deploy
from ssn.reference.grid import grid_shape, init_cells


def rgb_to_lab(image: np.ndarray) -> np.ndarray:
    """Lab (D65) of an RGB image.

    Parameters
    ----------
    image : ndarray, H x W x 3
        uint8 in [0, 255] or float in [0, 1].

    Returns
    -------
    ndarray, H x W x 3, float32
    """
    return color.rgb2lab(image).astype(np.float32)


def validate_image(image: np.ndarray, n_spixels: int) -> np.ndarray:
    """Return ``image`` as an H x W x 3 array or raise ValueError saying why not."""
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 RGB image, got shape {image.shape}")
    if n_spixels < 1:
        raise ValueError(f"n_spixels must be >= 1, got {n_spixels}")
    grid_h, grid_w = grid_shape(n_spixels, image.shape[0], image.shape[1])
    if grid_h < 1 or grid_w < 1:
        raise ValueError(f"n_spixels={n_spixels} gives an empty grid for a "
                         f"{image.shape[0]}x{image.shape[1]} image")
    if grid_h > image.shape[0] or grid_w > image.shape[1]:
        raise ValueError(f"n_spixels={n_spixels} asks for more grid cells than the "
                         f"{image.shape[0]}x{image.shape[1]} image has pixels")
    return image


def pixel_superpixels(image: np.ndarray, n_spixels: int = 100,
                      num_steps: int = 10) -> np.ndarray:
    """SSN_pix superpixels: differentiable SLIC on position and Lab, no CNN.

    Parameters
    ----------
    image : ndarray, H x W x 3
        RGB image, uint8 or float in [0, 1].
    n_spixels : int
        Requested number of superpixels; the grid is K_h x K_w <= n_spixels.
    num_steps : int
        SLIC iterations (>= 1).

    Returns
    -------
    ndarray, H x W, int32
        Superpixel id of each pixel (ids of the initial grid, 0..K-1; no
        connectivity enforcement).
    """
    image = validate_image(image, n_spixels)
    height, width = image.shape[:2]
    grid_h, grid_w = grid_shape(n_spixels, height, width)
    lab = rgb_to_lab(image).transpose(2, 0, 1)[None]
    cells = init_cells(height, width, grid_h, grid_w)[None, None].astype(np.float32)
    net = CheckedNet(pixel_ssn_deploy(height, width, n_spixels, num_steps))
    out = net.forward(outputs=["new_spix_indices"], img=lab, spixel_init=cells,
                      feat_spixel_init=cells)
    return out["new_spix_indices"][0, 0].astype(np.int32)
