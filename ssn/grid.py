"""The initial superpixel grid: its size for a requested count, and each pixel's cell."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Optional

import numpy as np

if TYPE_CHECKING:
    from ssn.calibration import Calibration


def grid_shape(n_spixels: int, height: int, width: int) -> tuple[int, int]:
    """Grid rows and columns (K_h, K_w) for ``n_spixels`` requested superpixels.

    K_w = floor(sqrt(n W / H)) and K_h = floor(sqrt(n H / W)), in exact integer
    arithmetic, each at least 1, with K_h * K_w <= n: so any n >= 1 gives a grid
    on any aspect ratio (a grid larger than the image is the caller's to refuse).

    Raises
    ------
    ValueError
        If a size or the count is below 1.
    """
    if n_spixels < 1 or height < 1 or width < 1:
        raise ValueError(
            f"n_spixels, height and width must be >= 1, got {n_spixels}, {height}, {width}")
    grid_h = max(1, min(math.isqrt(n_spixels * height // width), n_spixels))
    grid_w = max(1, min(math.isqrt(n_spixels * width // height), n_spixels // grid_h))
    return grid_h, grid_w


def init_cells(height: int, width: int, grid_h: int, grid_w: int) -> np.ndarray:
    """Each pixel's initial cell by the floor rule.

    cell(y, x) = floor(y K_h / H) K_w + floor(x K_w / W).

    Returns
    -------
    ndarray, H x W, int64
        Cell ids in 0 .. K_h K_w - 1.
    """
    if height < 1 or width < 1 or grid_h < 1 or grid_w < 1:
        raise ValueError(
            f"sizes must be >= 1, got image {height} x {width}, grid {grid_h} x {grid_w}")
    row_cells = (np.arange(height) * grid_h // height) * grid_w
    col_cells = np.arange(width) * grid_w // width
    return row_cells[:, None] + col_cells[None, :]


GRID_MODES = ("calibrated", "original")


def expected_count(grid_count: int, height: int, width: int, calibration: "Calibration",
                   position_weight: float = 1.0) -> float:
    """The expected number of superpixels after connectivity when the grid is made for
    ``grid_count``: its cells times the calibration's superpixels per cell at those
    cells, position weight and image size."""
    grid_h, grid_w = grid_shape(grid_count, height, width)
    cells = grid_h * grid_w
    return cells * calibration.per_cell(cells, position_weight, height * width / 1e6)


def grid_request(n_segments: int, height: int, width: int, calibration: "Calibration",
                 grid: str = "calibrated", position_weight: float = 1.0) -> int:
    """The count the initial grid is made for, so that about ``n_segments`` come out.

    "original" is the original release's rule: the grid for ``n_segments`` itself
    (about 1.4-1.8 times as many superpixels after connectivity at position weight
    1, on BSDS500 val). "calibrated" picks the grid whose expected final count
    (:func:`expected_count` with ``calibration``, a model's
    (:func:`ssn.model_metadata.model_settings`), at ``position_weight``)
    is nearest to ``n_segments`` (at most twice it); its superpixels are exactly those
    of "original" asked for that count.
    """
    if grid not in GRID_MODES:
        raise ValueError(f"grid must be one of {GRID_MODES}, got {grid!r}")
    if grid == "original" or n_segments <= 1:
        return n_segments
    def expected(count: int) -> float:
        return expected_count(count, height, width, calibration, position_weight)

    # The expected count grows with the request; compact superpixels (a large position
    # weight) can end below one per cell, so the grid may be up to twice the request.
    low, high = 1, 2 * n_segments
    while low < high:
        middle = (low + high + 1) // 2
        if expected(middle) <= n_segments:
            low = middle
        else:
            high = middle - 1
    best = low + 1 if abs(expected(low + 1) - n_segments) < abs(expected(low) - n_segments) \
        else low
    if best > n_segments and not fits(best, height, width):
        return n_segments  # the image is too small for more cells than requested
    return best


def fits(grid_count: int, height: int, width: int) -> bool:
    """Whether the grid for ``grid_count`` has at most one cell per pixel each way."""
    grid_h, grid_w = grid_shape(grid_count, height, width)
    return grid_h <= height and grid_w <= width


@dataclass(frozen=True)
class Grid:
    """The initial grid of one image, decided once (:func:`decide_grid`) and handed to
    everything that needs it: the net builder, the initial-cell input, the position
    scale and the connectivity sizes.

    Attributes
    ----------
    rows, cols : int
        Cells along y (K_h) and along x (K_w): :func:`grid_shape` of ``request``.
    request : int
        The count the grid was made for (:func:`grid_request`); the connectivity
        sizes count superpixels of this many.
    n_segments : int
        The count the caller asked for.
    rule : str
        How ``request`` was decided from ``n_segments``: "calibrated" or
        "original" (:data:`GRID_MODES`), or "given" (the request as is).

    Unpacks as ``rows, cols`` (``grid_h, grid_w = grid``).
    """

    rows: int
    cols: int
    request: int
    n_segments: int
    rule: str = "given"

    @classmethod
    def for_request(cls, request: int, height: int, width: int,
                    n_segments: Optional[int] = None, rule: str = "given") -> "Grid":
        """The grid :func:`grid_shape` gives for ``request`` on a ``height`` x ``width``
        image (a ValueError if it has more cells than pixels either way)."""
        rows, cols = grid_shape(request, height, width)
        if rows > height or cols > width:
            raise ValueError(f"a {height}x{width} image is too small for n_spixels={request} "
                             f"(a {rows}x{cols} grid)")
        return cls(rows, cols, request, request if n_segments is None else n_segments, rule)

    @property
    def shape(self) -> tuple[int, int]:
        """(rows, cols)."""
        return self.rows, self.cols

    @property
    def cells(self) -> int:
        return self.rows * self.cols

    def __iter__(self) -> Iterator[int]:
        return iter(self.shape)

    def cell_ids(self, height: int, width: int) -> np.ndarray:
        """Each pixel's initial cell (:func:`init_cells`), H x W int64."""
        return init_cells(height, width, self.rows, self.cols)

    def to_dict(self) -> dict:
        return dict(rows=self.rows, cols=self.cols, request=self.request,
                    n_segments=self.n_segments, rule=self.rule)


def decide_grid(n_segments: int, height: int, width: int, calibration: "Calibration",
                rule: str = "calibrated", position_weight: float = 1.0) -> Grid:
    """The grid of a ``height`` x ``width`` image asked for ``n_segments`` superpixels
    (:func:`grid_request` by ``rule``), or a ValueError saying why there is none."""
    if n_segments < 1:
        raise ValueError(f"n_segments must be >= 1, got {n_segments}")
    request = grid_request(n_segments, height, width, calibration, rule, position_weight)
    return Grid.for_request(request, height, width, n_segments, rule)
