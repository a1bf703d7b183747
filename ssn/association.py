"""SSN's soft pixel-superpixel association, and pooling and spreading values through it.

SSN's last SLIC step ends with a soft association: each pixel is scored against
the 9 superpixels of the 3 x 3 grid cells around its initial cell, and a softmax
over the 9 gives weights that sum to 1. :func:`ssn.inference.superpixels` with
``return_association=True`` hands it back as an :class:`Association`, read from
the deploy net's blobs; :func:`pool` averages per-pixel values over the
superpixels through it (the SpixelFeature2 layer's mean) and :func:`spread`
hands superpixel values back to the pixels (the SpixelToPixel layer's mix).

Indices are grid cells
----------------------
The association's superpixels are the K = K_h x K_w cells of the initial grid,
numbered row-major (cell ``r * K_w + c``), not the labels that
:func:`~ssn.inference.superpixels` returns. Its ``grid_labels`` is the hard
assignment before any relabelling: each pixel's heaviest candidate. The
returned labels come from ``grid_labels``:

* with ``enforce_connectivity=False`` they are ``grid_labels`` renumbered
  consecutively in increasing order (``np.unique(grid_labels,
  return_inverse=True)``), plus ``start_label``: a one-to-one map;
* with connectivity (the default), each connected piece of a grid cell's pixels
  becomes a label of its own, pieces below the minimum size join a neighbouring
  label and labels above the maximum are split. A grid cell may then own several
  labels, and a label may hold pixels of several cells. To carry soft values to
  the final labels, pool by grid cell and read each pixel's value through
  ``grid_labels`` (or :func:`spread`), or average the spread values over each label.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

NUM_CANDIDATES = 9
# Candidates outside the grid (a pixel of a border cell has 3 or 5 of them).
OUTSIDE = -1
# A superpixel whose association weights sum below this gets zeros from pool(), as the
# SpixelFeature2 layer gives (ssn.reference.spixel_feature2.ALIVE_THRESHOLD).
ALIVE_THRESHOLD = 0.001


@dataclass(frozen=True)
class Association:
    """The soft association of SSN's last SLIC step, for an H x W image and a
    K_h x K_w grid (K = K_h K_w superpixels).

    Attributes
    ----------
    candidates : ndarray, H x W x 9, int32
        Each pixel's candidate superpixels, grid cell indices in 0 .. K-1: the
        cells at grid offsets (dr, dc) = (i // 3 - 1, i % 3 - 1), i = 0 .. 8,
        from the pixel's initial cell; :data:`OUTSIDE` (-1) where that cell is
        off the grid.
    weights : ndarray, H x W x 9, float32
        The association weights: each pixel's sum to 1 (up to float rounding),
        and a candidate outside the grid has weight 0.
    centres : ndarray, K x C, float32
        The superpixels' feature vectors (C = 20 with deep features, the 5
        scaled position and Lab channels first; 5 in pixel mode) from which the
        weights were computed: the centres of the last SLIC step, S^(T-1).
        Zero for a superpixel that had no weight left in the step before.
    grid_labels : ndarray, H x W, int32
        The hard assignment, each pixel's heaviest candidate (a grid cell
        index): the labels before connectivity and renumbering.
    grid_shape : tuple of int
        (K_h, K_w).
    """

    candidates: np.ndarray
    weights: np.ndarray
    centres: np.ndarray
    grid_labels: np.ndarray
    grid_shape: tuple[int, int]

    @property
    def n_superpixels(self) -> int:
        """K, the number of grid cells (the rows of :attr:`centres`)."""
        return self.grid_shape[0] * self.grid_shape[1]


def candidate_cells(height: int, width: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Each pixel's 9 candidate grid cells around its initial cell (floor rule).

    Returns
    -------
    ndarray, H x W x 9, int32
        Cell index r * K_w + c of offset (i // 3 - 1, i % 3 - 1) for i = 0 .. 8, or
        :data:`OUTSIDE` where the cell is off the grid.
    """
    rows = (np.arange(height) * grid_h // height)[:, None]
    cols = (np.arange(width) * grid_w // width)[None, :]
    candidates = np.empty((height, width, NUM_CANDIDATES), np.int32)
    for index in range(NUM_CANDIDATES):
        row = rows + index // 3 - 1
        col = cols + index % 3 - 1
        inside = (row >= 0) & (row < grid_h) & (col >= 0) & (col < grid_w)
        candidates[..., index] = np.where(inside, row * grid_w + col, OUTSIDE)
    return candidates


def from_blobs(assoc: np.ndarray, centres: np.ndarray, hard: np.ndarray, grid_h: int,
               grid_w: int) -> Association:
    """An :class:`Association` from a deploy net's blobs (copies, laid out per pixel).

    Parameters
    ----------
    assoc : ndarray, 9 x H x W
        The final association blob (``final_pixel_assoc``) of one image.
    centres : ndarray, C x 1 x K
        The superpixel features that association was computed from.
    hard : ndarray, H x W
        ``new_spix_indices``, the hard assignment (grid cell indices, as floats).
    grid_h, grid_w : int
        The grid.
    """
    _, height, width = assoc.shape
    weights = np.ascontiguousarray(np.moveaxis(assoc, 0, -1), dtype=np.float32)
    return Association(candidates=candidate_cells(height, width, grid_h, grid_w),
                       weights=weights,
                       centres=np.ascontiguousarray(centres[:, 0, :].T, dtype=np.float32),
                       grid_labels=hard.astype(np.int32), grid_shape=(grid_h, grid_w))


def _check_association(association) -> tuple[int, int]:
    if not isinstance(association, Association):
        raise TypeError(f"association must be an ssn.association.Association, got "
                        f"{type(association).__name__}")
    return association.candidates.shape[:2]


def _as_channels(values, shape: tuple[int, ...], name: str, what: str) -> tuple[np.ndarray, bool]:
    """``values`` as float64 with a channel axis last, and whether it had none."""
    values = np.asarray(values)
    if not (np.issubdtype(values.dtype, np.number) or values.dtype == bool):
        raise TypeError(f"{name} must be numbers, got dtype {values.dtype}")
    flat = values.ndim == len(shape)
    if values.shape[:len(shape)] != shape or values.ndim not in (len(shape), len(shape) + 1):
        raise ValueError(f"{name} must be {what}, got shape {values.shape}")
    values = values.astype(np.float64)
    return (values[..., None] if flat else values), flat


def pool(values, association: Association) -> np.ndarray:
    """Association-weighted mean of per-pixel values over each superpixel.

    S[j] = sum over (p, i) with candidates[p, i] = j of weights[p, i] values[p],
    divided by the sum of those weights: what the SpixelFeature2 layer computes.
    A superpixel whose weights sum below 0.001 gets 0, as in that layer.

    Parameters
    ----------
    values : array_like, H x W x C or H x W
        Per-pixel values (colours, flow, features), any real dtype.
    association : Association
        From ``superpixels(..., return_association=True)``.

    Returns
    -------
    ndarray, K x C (K for H x W values), float64
        Row j is grid cell j's mean (not a returned label: see the module notes).
    """
    height, width = _check_association(association)
    values, flat = _as_channels(values, (height, width), "values", "H x W x C or H x W "
                                f"with H x W = {height} x {width}, the association's")
    count = association.n_superpixels
    totals = np.zeros(count)
    sums = np.zeros((count, values.shape[-1]))
    pixels = values.reshape(-1, values.shape[-1])
    for index in range(NUM_CANDIDATES):
        cells = association.candidates[..., index].ravel()
        inside = cells != OUTSIDE
        weight = association.weights[..., index].ravel()[inside].astype(np.float64)
        totals += np.bincount(cells[inside], weight, minlength=count)
        for channel in range(values.shape[-1]):
            sums[:, channel] += np.bincount(cells[inside], weight * pixels[inside, channel],
                                            minlength=count)
    alive = totals >= ALIVE_THRESHOLD
    means = np.zeros_like(sums)
    means[alive] = sums[alive] / totals[alive, None]
    return means[:, 0] if flat else means


def spread(values, association: Association) -> np.ndarray:
    """Each pixel's association-weighted mix of its candidate superpixels' values.

    out[p] = sum over i of weights[p, i] values[candidates[p, i]], candidates off
    the grid left out: what the SpixelToPixel layer computes.

    Parameters
    ----------
    values : array_like, K x C or K
        One row per grid cell (e.g. :func:`pool`'s result or
        :attr:`Association.centres`).
    association : Association

    Returns
    -------
    ndarray, H x W x C (H x W for K values), float64
    """
    _check_association(association)
    count = association.n_superpixels
    values, flat = _as_channels(values, (count,), "values",
                                f"K x C or K with K = {count}, the association's grid cells")
    height, width = association.candidates.shape[:2]
    mixed = np.zeros((height, width, values.shape[-1]))
    for index in range(NUM_CANDIDATES):
        cells = association.candidates[..., index]
        inside = cells != OUTSIDE
        weight = np.where(inside, association.weights[..., index], 0.0)
        mixed += weight[..., None] * values[np.where(inside, cells, 0)]
    return mixed[..., 0] if flat else mixed

