"""Masks for :func:`ssn.inference.superpixels`: which pixels get superpixels.

A mask (H x W, true inside) confines the superpixels to part of an image, as
scikit-image's ``slic(mask=...)`` does. :func:`superpixels` works on the mask's
bounding box (:func:`bounding_box`) with a grid as dense as the requested count
over the mask asks (:func:`masked_grid_request`); pixels outside the mask
neither start nor move a superpixel centre (:func:`ssn.nets.generators.masked_slic_net`),
and the connectivity step keeps to the mask (:func:`connect_inside`).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Optional

import numpy as np
from scipy import ndimage

from ssn.connectivity import enforce_connectivity
from ssn.grid import GRID_MODES, grid_shape

if TYPE_CHECKING:
    from ssn.calibration import Calibration

# The value of the extra feature channel inside the mask (0 outside). A centre that
# no pixel of the mask pulls is all zeros (SpixelFeature2) or 255 (SpixelFeature's
# empty cell), so its distance to every pixel inside grows by at least 745^2: its
# softmax weight is exactly 0 in float32 and no pixel inside picks it. A live centre
# has the value itself, up to float rounding (its square stays below 1e-2).
INSIDE_VALUE = 1000.0


def mask_argument(mask, shape: tuple[int, int]) -> Optional[np.ndarray]:
    """``mask`` as a C-contiguous H x W bool array, or None when it is None.

    A bool array, or a numeric one that holds only 0 and 1 (as scikit-image takes),
    of the image's height and width.

    Raises
    ------
    TypeError
        A mask that is not an array of bools or numbers.
    ValueError
        The wrong shape, values other than 0 and 1, or no pixel inside.
    """
    if mask is None:
        return None
    array = np.asarray(mask)
    if array.dtype != np.bool_:
        if not np.issubdtype(array.dtype, np.number):
            raise TypeError(f"mask must be a boolean array, got dtype {array.dtype}")
        if array.size and not np.isin(array, (0, 1)).all():
            raise ValueError("mask must be boolean, or hold only 0 and 1; got other values "
                             "(use mask != 0, or a threshold, to make one)")
    if array.shape != tuple(shape):
        raise ValueError(f"mask has shape {array.shape}, but the image is "
                         f"{shape[0]} x {shape[1]}: it must be H x W like the image")
    array = np.ascontiguousarray(array, dtype=bool)
    if not array.any():
        raise ValueError("mask selects no pixel: there is nothing to segment")
    return array


@dataclass(frozen=True)
class Box:
    """Rows ``top:bottom`` and columns ``left:right`` of an image."""

    top: int
    left: int
    bottom: int
    right: int

    @property
    def height(self) -> int:
        return self.bottom - self.top

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.bottom), slice(self.left, self.right)


def bounding_box(mask: np.ndarray) -> Box:
    """The smallest box that holds every true pixel of ``mask`` (H x W bool, some true)."""
    rows = np.flatnonzero(mask.any(axis=1))
    columns = np.flatnonzero(mask.any(axis=0))
    return Box(int(rows[0]), int(columns[0]), int(rows[-1]) + 1, int(columns[-1]) + 1)


# A grid cell that holds at least this share of its pixels inside the mask counts as a
# whole cell: a piece of a cell that large ends as a superpixel of its own about as
# often as a whole cell does (measured on BSDS500 val images with several masks).
FULL_CELL_SHARE = 0.2


def masked_grid_request(n_segments: int, mask: np.ndarray, calibration: "Calibration",
                        grid: str = "calibrated", position_weight: float = 1.0) -> int:
    """The count the grid over the mask's box is made for, so that about ``n_segments``
    superpixels come out inside the mask.

    The cells a mask covers count by their share inside, a share of at least
    :data:`FULL_CELL_SHARE` as a whole cell (:func:`covered_cells`). "original"
    picks the grid of about ``n_segments`` covered cells; "calibrated" the grid
    whose covered cells times the model's superpixels per cell
    (:meth:`ssn.calibration.Calibration.per_cell` for the box's grid, as for a
    whole image) come nearest to ``n_segments``.

    Parameters
    ----------
    n_segments : int
    mask : ndarray, h x w bool
        The mask within its bounding box (some pixel true).
    calibration : ssn.calibration.Calibration
        The model's count calibration.
    grid : {'calibrated', 'original'}
    position_weight : float

    Raises
    ------
    ValueError
        An unknown grid rule, or more superpixels than the mask has pixels.
    """
    if grid not in GRID_MODES:
        raise ValueError(f"grid must be one of {GRID_MODES}, got {grid!r}")
    height, width = mask.shape
    sums = np.zeros((height + 1, width + 1), np.int64)
    sums[1:, 1:] = mask.cumsum(axis=0).cumsum(axis=1)
    if n_segments > sums[-1, -1]:
        raise ValueError(f"n_segments={n_segments} is more than the mask's {sums[-1, -1]} "
                         "pixels")

    def expected(count: int) -> float:
        grid_h, grid_w = grid_shape(count, height, width)
        if grid_h > height or grid_w > width:
            return math.inf  # more cells than pixels: check_geometry refuses it
        cells = covered_cells(sums, grid_h, grid_w)
        if grid == "original":
            return cells
        return cells * calibration.per_cell(grid_h * grid_w, position_weight,
                                            height * width / 1e6)

    # A model that ends with fewer superpixels than cells (a large position weight)
    # needs a grid for up to twice the count, as in grid_request.
    reach = 1 if grid == "original" else 2
    low, high = 1, max(1, math.ceil(reach * n_segments * height * width / sums[-1, -1]))
    while low < high:  # the expected count grows with the request
        middle = (low + high + 1) // 2
        if expected(middle) <= n_segments:
            low = middle
        else:
            high = middle - 1
    above = low + 1
    if abs(expected(above) - n_segments) < abs(expected(low) - n_segments):
        return above
    return low


def covered_cells(sums: np.ndarray, grid_h: int, grid_w: int) -> float:
    """How many cells of a ``grid_h`` x ``grid_w`` grid (:func:`ssn.grid.init_cells`'
    floor rule) a mask covers: each cell's share of pixels inside, over
    :data:`FULL_CELL_SHARE`, at most 1, summed.

    ``sums`` is the mask's summed-area table, (h + 1) x (w + 1): ``sums[y, x]`` is the
    count of true pixels above row y and left of column x.
    """
    height, width = sums.shape[0] - 1, sums.shape[1] - 1
    # The floor rule's bands: row y is in band floor(y K_h / H), from ceil(r H / K_h).
    rows = (np.arange(grid_h + 1) * height + grid_h - 1) // grid_h
    columns = (np.arange(grid_w + 1) * width + grid_w - 1) // grid_w
    corner = sums[np.ix_(rows, columns)]
    inside = corner[1:, 1:] - corner[:-1, 1:] - corner[1:, :-1] + corner[:-1, :-1]
    pixels = np.diff(rows)[:, None] * np.diff(columns)[None, :]
    return float(np.minimum(1.0, inside / (FULL_CELL_SHARE * pixels)).sum())


def connect_inside(labels: np.ndarray, mask: np.ndarray, min_size: int,
                   max_size: int) -> np.ndarray:
    """Connected superpixels of bounded size inside a mask.

    :func:`ssn.connectivity.enforce_connectivity` runs with every pixel outside
    the mask given one label of its own, so that no piece inside reaches outside.
    Its one way out is a small piece inside merging into a piece outside (its last
    labelled neighbour); such pieces (known by their labels: a piece's label is
    first met at its seed, outside) are then given to the superpixel inside that
    shares the longest border with them, or keep a label of their own when none
    touches them (a part of the mask smaller than ``min_size``).

    Parameters
    ----------
    labels : ndarray, H x W, int
        Raw superpixel ids.
    mask : ndarray, H x W, bool
    min_size, max_size : int
        As :func:`ssn.connectivity.enforce_connectivity` takes them.

    Returns
    -------
    ndarray, H x W, int32
        Labels consecutive from 0 inside the mask (in the raster order of their
        first pixel), -1 outside.
    """
    outside = int(labels.max()) + 1
    pieces = enforce_connectivity(np.where(mask, labels, outside), min_size, max_size)
    ids, first = np.unique(pieces.ravel(), return_index=True)
    seeded_outside = ids[~mask.ravel()[first]]
    stray = mask & np.isin(pieces, seeded_outside)
    if stray.any():
        pieces = _give_to_neighbours(pieces, mask, stray)
    return consecutive_inside(pieces, mask)


def _give_to_neighbours(pieces: np.ndarray, mask: np.ndarray, stray: np.ndarray
                        ) -> np.ndarray:
    """``pieces`` with each 4-connected group of ``stray`` pixels given the label of
    the piece inside the mask (and not stray) that shares most of its border, the
    smallest such label on a tie; a group that no such piece touches gets a new label."""
    groups, count = ndimage.label(stray)
    keep = mask & ~stray
    pairs = []
    height, width = pieces.shape
    for dy, dx in ((0, 1), (0, -1), (1, 0), (-1, 0)):
        src = (slice(max(0, -dy), height - max(0, dy)), slice(max(0, -dx), width - max(0, dx)))
        dst = (slice(max(0, dy), height - max(0, -dy)), slice(max(0, dx), width - max(0, -dx)))
        touching = (groups[src] > 0) & keep[dst]
        pairs.append(np.stack([groups[src][touching], pieces[dst][touching]]))
    group_ids, labels = np.concatenate(pairs, axis=1)
    out = pieces.copy()
    new_label = int(pieces.max()) + 1
    target = np.arange(new_label, new_label + count + 1)  # by group id; 0 unused
    if group_ids.size:
        (found_groups, found_labels), borders = np.unique(np.stack([group_ids, labels]),
                                                          axis=1, return_counts=True)
        order = np.lexsort((found_labels, -borders, found_groups))
        chosen_groups, first = np.unique(found_groups[order], return_index=True)
        target[chosen_groups] = found_labels[order][first]
    out[stray] = target[groups[stray]]
    return out


def consecutive_inside(labels: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``labels`` renumbered 0, 1, ... inside the mask in the order of their values,
    -1 outside (H x W int32)."""
    out = np.full(labels.shape, -1, np.int32)
    out[mask] = np.unique(labels[mask], return_inverse=True)[1].ravel()
    return out
