"""Superpixel quality metrics: ASA, boundary recall and precision, undersegmentation error,
compactness, explained variation.

All metrics take H x W integer label maps in which only equality between labels matters (label
values need not be consecutive or start at 0). Every function is vectorised with NumPy/SciPy.

Evaluation protocol: :func:`evaluate` gives one row per (image, annotator); averages over an
image set are means over those rows and are left to the caller.
"""
from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np
from scipy import ndimage

__all__ = [
    "achievable_segmentation_accuracy",
    "boundary_map",
    "boundary_precision",
    "boundary_recall",
    "compactness",
    "default_tolerance",
    "evaluate",
    "explained_variation",
    "number_of_superpixels",
    "undersegmentation_error",
]

#: Boundary tolerance as a fraction of the image diagonal (BSDS benchmark convention).
TOLERANCE_FRACTION = 0.0025


def _label_map(labels: Any, name: str) -> np.ndarray:
    """``labels`` as a validated, non-empty 2-D integer array (values unchanged)."""
    arr = np.asarray(labels)
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 2-D H x W label map, got shape {arr.shape}")
    if arr.size == 0:
        raise ValueError(f"{name} is empty (shape {arr.shape})")
    if arr.dtype == np.bool_:
        return arr.astype(np.int64)
    if np.issubdtype(arr.dtype, np.floating):
        if not (np.all(np.isfinite(arr)) and np.all(arr == np.round(arr))):
            raise ValueError(f"{name} must be integer-valued")
        return arr.astype(np.int64)
    if not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{name} must be an integer label map, got dtype {arr.dtype}")
    return arr


def _consecutive(labels: np.ndarray) -> tuple[np.ndarray, int]:
    """Labels renumbered 0..k-1 (same equalities) as intp, and k."""
    lo = int(labels.min())
    hi = int(labels.max())
    if lo >= 0 and hi < 4 * labels.size + 1024:
        # Cheap path: bincount to find the used values, then a lookup table.
        labels = labels.astype(np.intp, copy=False)
        used = np.bincount(labels.ravel(), minlength=hi + 1) > 0
        lut = np.cumsum(used) - 1
        return lut[labels].astype(np.intp), int(used.sum())
    values, inverse = np.unique(labels, return_inverse=True)
    return inverse.reshape(labels.shape).astype(np.intp), int(values.size)


def _pair(spixels: Any, gt: Any) -> tuple[np.ndarray, np.ndarray]:
    sp = _label_map(spixels, "spixels")
    g = _label_map(gt, "gt")
    if sp.shape != g.shape:
        raise ValueError(f"spixels and gt shapes differ: {sp.shape} vs {g.shape}")
    return sp, g


def _overlaps(sp: np.ndarray, g: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Non-zero entries of the superpixel x GT contingency table.

    Returns ``(s, counts, areas)``: for every overlapping (superpixel, GT segment) pair its
    superpixel index ``s`` (0..k-1) and ``|S ∩ G|``, and ``areas[s] = |S|``.
    """
    s_idx, n_s = _consecutive(sp)
    g_idx, n_g = _consecutive(g)
    keys = s_idx.ravel().astype(np.int64) * n_g + g_idx.ravel()
    if n_s * n_g <= 1 << 23:
        table = np.bincount(keys, minlength=n_s * n_g)
        nonzero = np.flatnonzero(table)
        counts = table[nonzero]
    else:
        nonzero, counts = np.unique(keys, return_counts=True)
    areas = np.bincount(s_idx.ravel(), minlength=n_s)
    return nonzero // n_g, counts, areas


def achievable_segmentation_accuracy(spixels: np.ndarray, gt: np.ndarray) -> float:
    """Achievable segmentation accuracy (ASA).

    Every superpixel takes the ground-truth label it overlaps most; ASA is the fraction of
    pixels that then carry their correct ground-truth label:
    ``(1/N) * sum_S max_G |S ∩ G|``.

    Parameters
    ----------
    spixels : ndarray, H x W, int
        Superpixel labels.
    gt : ndarray, H x W, int
        Ground-truth segment labels.

    Returns
    -------
    float
        In (0, 1]; 1 when every superpixel lies inside one GT segment.
    """
    sp, g = _pair(spixels, gt)
    s, counts, areas = _overlaps(sp, g)
    best = np.zeros(areas.size, dtype=np.int64)
    np.maximum.at(best, s, counts)
    return float(best.sum()) / sp.size


def undersegmentation_error(spixels: np.ndarray, gt: np.ndarray) -> float:
    """Undersegmentation error, Neubert and Protzel's corrected form.

    ``UE = (1/N) * sum_G sum_{S: S ∩ G != {}} min(|S ∩ G|, |S \\ G|)``: every superpixel that
    leaks out of a GT segment is charged the smaller of its inside and outside parts.

    Parameters
    ----------
    spixels : ndarray, H x W, int
        Superpixel labels.
    gt : ndarray, H x W, int
        Ground-truth segment labels.

    Returns
    -------
    float
        >= 0; 0 when every superpixel lies inside one GT segment.
    """
    sp, g = _pair(spixels, gt)
    s, counts, areas = _overlaps(sp, g)
    return float(np.minimum(counts, areas[s] - counts).sum()) / sp.size


def default_tolerance(height: int, width: int) -> int:
    """Default boundary tolerance in pixels: ``0.0025 * sqrt(H^2 + W^2)`` rounded half up.

    481 x 321 (BSDS500) gives 0.0025 * 578.27 = 1.446, i.e. 1 pixel.
    """
    return int(math.floor(TOLERANCE_FRACTION * math.hypot(height, width) + 0.5))


def boundary_map(labels: np.ndarray) -> np.ndarray:
    """Boundary pixels of a label map.

    Convention: pixel (y, x) is a boundary pixel when its right neighbour (y, x+1) or its lower
    neighbour (y+1, x) exists and has a different label. So a boundary between two regions is
    one pixel thick and lies on the left/upper side of the region edge; the image border is not
    a boundary.

    Parameters
    ----------
    labels : ndarray, H x W, int

    Returns
    -------
    ndarray, H x W, bool
    """
    lab = _label_map(labels, "labels")
    edge = np.zeros(lab.shape, dtype=bool)
    edge[:, :-1] = lab[:, :-1] != lab[:, 1:]
    edge[:-1, :] |= lab[:-1, :] != lab[1:, :]
    return edge


def _dilate(edge: np.ndarray, tolerance: int) -> np.ndarray:
    """Pixels within Chebyshev distance ``tolerance`` of a True pixel of ``edge``."""
    if tolerance == 0:
        return edge
    size = 2 * tolerance + 1
    return ndimage.maximum_filter(edge.view(np.uint8), size=size, mode="constant",
                                  cval=0).view(bool)


def _tolerance(tolerance: Optional[int], shape: tuple[int, ...]) -> int:
    if tolerance is None:
        return default_tolerance(shape[0], shape[1])
    if isinstance(tolerance, (bool, np.bool_)) or not isinstance(tolerance, (int, np.integer)):
        raise ValueError(f"tolerance must be an int or None, got {tolerance!r}")
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    return int(tolerance)


def _hit_fraction(target: np.ndarray, other: np.ndarray, tolerance: int) -> float:
    """Fraction of True pixels of ``target`` within ``tolerance`` of a True pixel of ``other``.

    1.0 when ``target`` has no True pixel (nothing to match).
    """
    total = int(target.sum())
    if total == 0:
        return 1.0
    return int(np.count_nonzero(target & _dilate(other, tolerance))) / total


def boundary_recall(spixels: np.ndarray, gt: np.ndarray,
                    tolerance: Optional[int] = None) -> float:
    """Boundary recall: fraction of GT boundary pixels near a superpixel boundary pixel.

    Boundary pixels follow :func:`boundary_map` (right or lower 4-neighbour differs) for both
    maps. A GT boundary pixel counts as recalled when a superpixel boundary pixel lies within
    Chebyshev distance ``tolerance``, i.e. in the (2t+1) x (2t+1) window centred on it.

    Parameters
    ----------
    spixels : ndarray, H x W, int
        Superpixel labels.
    gt : ndarray, H x W, int
        Ground-truth segment labels.
    tolerance : int or None
        t >= 0 in pixels; None means :func:`default_tolerance` (1 pixel for 481 x 321).

    Returns
    -------
    float
        In [0, 1]; 1.0 when the GT has no boundary pixel.
    """
    sp, g = _pair(spixels, gt)
    return _hit_fraction(boundary_map(g), boundary_map(sp), _tolerance(tolerance, sp.shape))


def boundary_precision(spixels: np.ndarray, gt: np.ndarray,
                       tolerance: Optional[int] = None) -> float:
    """Boundary precision: fraction of superpixel boundary pixels near a GT boundary pixel.

    The converse of :func:`boundary_recall`, with the same boundary convention and tolerance.

    Parameters
    ----------
    spixels : ndarray, H x W, int
        Superpixel labels.
    gt : ndarray, H x W, int
        Ground-truth segment labels.
    tolerance : int or None
        t >= 0 in pixels; None means :func:`default_tolerance`.

    Returns
    -------
    float
        In [0, 1]; 1.0 when the superpixel map has no boundary pixel (a single superpixel).
    """
    sp, g = _pair(spixels, gt)
    return _hit_fraction(boundary_map(sp), boundary_map(g), _tolerance(tolerance, sp.shape))


def compactness(spixels: np.ndarray) -> float:
    """Compactness (Schick et al. 2012): area-weighted mean isoperimetric quotient.

    ``CO = sum_S (|S| / N) * 4 * pi * A(S) / P(S)^2`` with ``A(S) = |S|`` in pixels and the
    perimeter ``P(S)`` the number of pixel edges between a pixel of S and a 4-neighbour outside
    S, the image border included (a lone pixel has P = 4). A square superpixel of any size
    scores pi / 4; the value is at most pi / 4 for any shape under this perimeter.

    Parameters
    ----------
    spixels : ndarray, H x W, int
        Superpixel labels.

    Returns
    -------
    float
        In (0, pi/4].
    """
    sp = _label_map(spixels, "spixels")
    lab, n = _consecutive(sp)
    padded = np.full((lab.shape[0] + 2, lab.shape[1] + 2), -1, dtype=np.intp)
    padded[1:-1, 1:-1] = lab
    perimeter = np.zeros(n, dtype=np.int64)
    for a, b in ((padded[1:-1, :-1], padded[1:-1, 1:]), (padded[:-1, 1:-1], padded[1:, 1:-1])):
        cut = a != b
        for side in (a[cut], b[cut]):
            perimeter += np.bincount(side[side >= 0], minlength=n)
    area = np.bincount(lab.ravel(), minlength=n).astype(np.float64)
    return float(np.sum(area / sp.size * 4.0 * math.pi * area / perimeter.astype(np.float64) ** 2))


def explained_variation(spixels: np.ndarray, image: np.ndarray) -> float:
    """Explained variation (Moore et al. 2008).

    ``EV = sum_S |S| * ||mu_S - mu||^2 / sum_p ||x_p - mu||^2``, with ``mu_S`` the mean colour
    of superpixel S and ``mu`` the image's mean colour.

    Parameters
    ----------
    spixels : ndarray, H x W, int
        Superpixel labels.
    image : ndarray, H x W x C or H x W, float
        The image (any colour space; a 2-D image is one channel).

    Returns
    -------
    float
        In [0, 1]: 1 when every superpixel is constant-coloured, 0 for a single superpixel.
        A constant image (zero total variation) gives 1.0.
    """
    sp = _label_map(spixels, "spixels")
    img = np.asarray(image, dtype=np.float64)
    if img.ndim == 2:
        img = img[:, :, None]
    if img.ndim != 3 or img.shape[:2] != sp.shape:
        raise ValueError(f"image must be H x W x C or H x W matching spixels {sp.shape}, got "
                         f"shape {np.shape(image)}")
    if not np.all(np.isfinite(img)):
        raise ValueError("image has non-finite values")
    lab, n = _consecutive(sp)
    flat = lab.ravel()
    pixels = img.reshape(-1, img.shape[2])
    centred = pixels - pixels.mean(axis=0)
    total = float(np.sum(centred ** 2))
    if total == 0.0:
        return 1.0
    area = np.bincount(flat, minlength=n).astype(np.float64)
    explained = 0.0
    for c in range(centred.shape[1]):
        sums = np.bincount(flat, weights=centred[:, c], minlength=n)
        explained += float(np.sum(sums ** 2 / area))   # |S| * mean_S^2 = sum_S^2 / |S|
    return explained / total


def number_of_superpixels(spixels: np.ndarray) -> int:
    """Number of distinct labels in a superpixel map.

    Parameters
    ----------
    spixels : ndarray, H x W, int

    Returns
    -------
    int
    """
    return _consecutive(_label_map(spixels, "spixels"))[1]


def evaluate(spixels: np.ndarray, gts: list, image: np.ndarray,
             tolerance: Optional[int] = None) -> list[dict]:
    """All metrics of one superpixel map against each annotator's ground truth.

    Parameters
    ----------
    spixels : ndarray, H x W, int
        Superpixel labels.
    gts : list of ndarray, each H x W, int
        One ground-truth segmentation per annotator (at least one).
    image : ndarray, H x W x C or H x W, float
        The image, for explained variation.
    tolerance : int or None
        Boundary tolerance; None means :func:`default_tolerance`.

    Returns
    -------
    list of dict
        One row per annotator, in order, with keys ``annotator`` (index), ``n_spixels``,
        ``asa``, ``boundary_recall``, ``boundary_precision``, ``undersegmentation_error``,
        ``compactness``, ``explained_variation`` and ``tolerance`` (the value used). The
        GT-free metrics repeat on every row. Means over rows are the caller's.
    """
    sp = _label_map(spixels, "spixels")
    if isinstance(gts, np.ndarray) and gts.ndim == 2:
        raise ValueError("gts must be a list of H x W ground truths, got one 2-D array")
    gts = list(gts)
    if not gts:
        raise ValueError("gts is empty: need at least one ground truth")
    tol = _tolerance(tolerance, sp.shape)
    shared = {
        "n_spixels": number_of_superpixels(sp),
        "compactness": compactness(sp),
        "explained_variation": explained_variation(sp, image),
    }
    sp_edge = boundary_map(sp)
    rows = []
    for i, gt in enumerate(gts):
        sp_, g = _pair(sp, gt)
        g_edge = boundary_map(g)
        rows.append({
            "annotator": i,
            "n_spixels": shared["n_spixels"],
            "asa": achievable_segmentation_accuracy(sp_, g),
            "boundary_recall": _hit_fraction(g_edge, sp_edge, tol),
            "boundary_precision": _hit_fraction(sp_edge, g_edge, tol),
            "undersegmentation_error": undersegmentation_error(sp_, g),
            "compactness": shared["compactness"],
            "explained_variation": shared["explained_variation"],
            "tolerance": tol,
        })
    return rows
