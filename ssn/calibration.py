"""How many superpixels SSN keeps per initial grid cell: the count calibration.

SSN starts from a K_h x K_w grid and, after connectivity, ends with more or fewer
superpixels than cells: it splits cells that straddle boundaries, and merges
fragments below the minimum size. How many per cell depends on the model, the
position weight (compact superpixels split less), the number of cells and,
mildly, the image size. A :class:`Calibration` is that ratio, fitted to
measurements (``ssn-bench-calibration``) as a smooth function::

    log(ratio) = sum_i c_i t_i(x, y, z),
    x = log(cells), y = log(position_weight), z = log(megapixels),

with terms t_i from :data:`TERMS` (products of x, y, z up to degree three;
:data:`DEFAULT_TERMS` are those fitted by default), each
input clamped to the range it was measured over (so the ratio is constant
beyond it). :func:`ssn.grid.grid_request` inverts it: it picks the grid whose
expected count is nearest the request.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Mapping, Optional, Sequence

import numpy as np

# Term name -> its value from (x, y, z) = (log cells, log position weight, log megapixels).
TERMS = {
    "1": lambda x, y, z: 1.0,
    "x": lambda x, y, z: x,
    "y": lambda x, y, z: y,
    "z": lambda x, y, z: z,
    "x*x": lambda x, y, z: x * x,
    "y*y": lambda x, y, z: y * y,
    "z*z": lambda x, y, z: z * z,
    "x*y": lambda x, y, z: x * y,
    "x*z": lambda x, y, z: x * z,
    "y*z": lambda x, y, z: y * z,
    "x*x*x": lambda x, y, z: x * x * x,
    "y*y*y": lambda x, y, z: y * y * y,
    "x*x*y": lambda x, y, z: x * x * y,
    "x*y*y": lambda x, y, z: x * y * y,
    "x*y*z": lambda x, y, z: x * y * z,
    "y*y*z": lambda x, y, z: y * y * z,
    "x*x*z": lambda x, y, z: x * x * z,
}
DEFAULT_TERMS = ("1", "x", "y", "z", "x*x", "y*y", "z*z", "x*y", "x*z", "y*z", "x*x*y", "x*y*y",
                 "x*x*x", "y*y*y", "x*y*z", "y*y*z")
INPUTS = ("cells", "position_weight", "megapixels")


class CalibrationError(ValueError):
    """A calibration that cannot be used, with the reason."""


@dataclass(frozen=True)
class Calibration:
    """Superpixels after connectivity per grid cell, as a function of the cells, the
    position weight and the image size.

    Attributes
    ----------
    terms : tuple of str
        Names from :data:`TERMS`.
    coefficients : tuple of float
        One per term.
    ranges : tuple of (float, float)
        The measured (low, high) of cells, position weight and megapixels
        (:data:`INPUTS`); inputs are clamped to them.
    measured : str
        What the fit was measured on.
    """

    terms: tuple[str, ...]
    coefficients: tuple[float, ...]
    ranges: tuple[tuple[float, float], ...]
    measured: str = ""

    def __post_init__(self) -> None:
        unknown = [term for term in self.terms if term not in TERMS]
        if unknown:
            raise CalibrationError(f"unknown calibration terms {unknown}; known: "
                                   f"{', '.join(TERMS)}")
        if len(self.coefficients) != len(self.terms):
            raise CalibrationError(f"{len(self.terms)} terms but {len(self.coefficients)} "
                                   "coefficients")
        if not all(math.isfinite(c) for c in self.coefficients):
            raise CalibrationError("calibration coefficients must be finite numbers")
        if len(self.ranges) != len(INPUTS):
            raise CalibrationError(f"need ranges of {', '.join(INPUTS)}")
        for name, (low, high) in zip(INPUTS, self.ranges):
            if not (0 < low <= high and math.isfinite(high)):
                raise CalibrationError(f"the range of {name} must be 0 < low <= high, got "
                                       f"[{low}, {high}]")

    def per_cell(self, cells: float, position_weight: float, megapixels: float) -> float:
        """The expected superpixels per grid cell after connectivity."""
        x, y, z = (math.log(min(max(value, low), high)) for value, (low, high)
                   in zip((cells, position_weight, megapixels), self.ranges))
        return math.exp(sum(c * TERMS[term](x, y, z)
                            for term, c in zip(self.terms, self.coefficients)))

    def to_dict(self) -> dict:
        return dict(terms=list(self.terms), coefficients=[float(c) for c in self.coefficients],
                    ranges={name: [float(low), float(high)]
                            for name, (low, high) in zip(INPUTS, self.ranges)},
                    measured=self.measured)

    @classmethod
    def from_dict(cls, data: Mapping) -> "Calibration":
        """The calibration of :meth:`to_dict`'s form; CalibrationError says what is wrong."""
        if not isinstance(data, Mapping):
            raise CalibrationError(f"a calibration is an object, got {type(data).__name__}")
        missing = [key for key in ("terms", "coefficients", "ranges") if key not in data]
        if missing:
            raise CalibrationError(f"calibration lacks {', '.join(missing)}")
        ranges = data["ranges"]
        if not isinstance(ranges, Mapping) or sorted(ranges) != sorted(INPUTS):
            raise CalibrationError(f"calibration ranges must give {', '.join(INPUTS)}")
        try:
            return cls(terms=tuple(str(term) for term in data["terms"]),
                       coefficients=tuple(float(c) for c in data["coefficients"]),
                       ranges=tuple((float(ranges[name][0]), float(ranges[name][1]))
                                    for name in INPUTS),
                       measured=str(data.get("measured", "")))
        except (TypeError, ValueError, IndexError, KeyError) as error:
            if isinstance(error, CalibrationError):
                raise
            raise CalibrationError(f"calibration values are not numbers: {error}") from error


def fit(cells: Sequence[float], position_weights: Sequence[float],
        megapixels: Sequence[float], per_cell: Sequence[float],
        images: Optional[Sequence[str]] = None, terms: Sequence[str] = DEFAULT_TERMS,
        measured: str = "", size_from: Optional[Calibration] = None) -> Calibration:
    """Least squares of log(per_cell) on the terms, over measured points.

    Parameters
    ----------
    cells, position_weights, megapixels, per_cell : sequence of float, length P
        Each point's grid cells, position weight, image size and superpixels per
        cell after connectivity.
    images : sequence of str, length P, optional
        Each point's image. Given, every image gets an offset of its own (images
        differ far more than sizes do, and not every image is measured at every
        size), and the constant term becomes the log of the mean of exp(offset):
        the calibration then predicts the mean count over the images.
    size_from : Calibration, optional
        Take the terms in z (the size) and the size range from this calibration
        instead of fitting them: for a model measured at one size only, which
        then follows another's size dependence.
    """
    inputs = [np.asarray(values, np.float64) for values in (cells, position_weights,
                                                            megapixels)]
    ratio = np.asarray(per_cell, np.float64)
    if len({len(values) for values in (*inputs, ratio)}) != 1 or (
            images is not None and len(images) != len(ratio)):
        raise ValueError("cells, position_weights, megapixels, per_cell (and images) differ "
                         "in length")
    if "1" not in terms:
        raise ValueError('the terms need the constant "1"')
    if len(ratio) < len(terms):
        raise ValueError(f"{len(terms)} terms need at least as many points, got {len(ratio)}")
    if (ratio <= 0).any() or any((values <= 0).any() for values in inputs):
        raise ValueError("cells, position weights, sizes and ratios must be positive")
    x, y, z = (np.log(values) for values in inputs)
    fixed = {}
    if size_from is not None:
        fixed = {term: c for term, c in zip(size_from.terms, size_from.coefficients)
                 if "z" in term}
        terms = [term for term in terms if "z" not in term] + list(fixed)
    target = np.log(ratio) - sum((np.broadcast_to(TERMS[term](x, y, z), x.shape) * c
                                  for term, c in fixed.items()), np.zeros_like(x))
    varying = [term for term in terms if term != "1" and term not in fixed]
    columns = [np.broadcast_to(TERMS[term](x, y, z), x.shape) for term in varying]
    names = sorted(set(images)) if images is not None else []
    if names:
        columns += [np.array([image == name for image in images], np.float64)
                    for name in names]
    else:
        columns.append(np.ones_like(x))
    solution, *_ = np.linalg.lstsq(np.stack(columns, 1), target, rcond=None)
    slopes, offsets = solution[:len(varying)], solution[len(varying):]
    constant = float(np.log(np.mean(np.exp(offsets))))
    coefficients = {"1": constant, **dict(zip(varying, map(float, slopes))), **fixed}
    ranges = tuple((float(values.min()), float(values.max())) for values in inputs)
    if size_from is not None:
        ranges = ranges[:2] + (size_from.ranges[2],)
    return Calibration(tuple(terms), tuple(coefficients[term] for term in terms), ranges,
                       measured)
