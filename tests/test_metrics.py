"""Tests of the superpixel metrics on tiny maps with exact answers, against brute-force loops
on random maps, and for input errors."""
import math

import numpy as np
import pytest

from ssn.evaluation import metrics
from ssn.evaluation.metrics import (
    achievable_segmentation_accuracy,
    boundary_map,
    boundary_precision,
    boundary_recall,
    compactness,
    default_tolerance,
    evaluate,
    explained_variation,
    number_of_superpixels,
    undersegmentation_error,
)

QUADRANTS = np.array([[0, 0, 1, 1],
                      [0, 0, 1, 1],
                      [2, 2, 3, 3],
                      [2, 2, 3, 3]])


def halves(height, width, split, axis=1, labels=(0, 1)):
    """A map with ``labels[0]`` before index ``split`` along ``axis`` and ``labels[1]`` after."""
    index = np.arange(width if axis == 1 else height)
    line = np.where(index < split, labels[0], labels[1])
    return np.broadcast_to(line[None, :] if axis == 1 else line[:, None],
                           (height, width)).copy()


# --------------------------------------------------------------------------------------------
# Brute-force oracles, straight from the definitions


def asa_loop(sp, gt):
    total = 0
    for s in np.unique(sp):
        total += max(np.sum((sp == s) & (gt == g)) for g in np.unique(gt))
    return total / sp.size


def ue_loop(sp, gt):
    total = 0
    for g in np.unique(gt):
        for s in np.unique(sp):
            inside = np.sum((sp == s) & (gt == g))
            if inside:
                total += min(inside, np.sum((sp == s) & (gt != g)))
    return total / sp.size


def boundary_loop(lab):
    height, width = lab.shape
    edge = np.zeros(lab.shape, dtype=bool)
    for y in range(height):
        for x in range(width):
            edge[y, x] = ((x + 1 < width and lab[y, x + 1] != lab[y, x])
                          or (y + 1 < height and lab[y + 1, x] != lab[y, x]))
    return edge


def hit_fraction_loop(target, other, tol):
    hits, total = 0, 0
    for y, x in zip(*np.nonzero(target)):
        total += 1
        hits += bool(other[max(y - tol, 0):y + tol + 1, max(x - tol, 0):x + tol + 1].any())
    return hits / total if total else 1.0


def compactness_loop(sp):
    height, width = sp.shape
    result = 0.0
    for s in np.unique(sp):
        area, perimeter = 0, 0
        for y in range(height):
            for x in range(width):
                if sp[y, x] != s:
                    continue
                area += 1
                for yy, xx in ((y, x + 1), (y, x - 1), (y + 1, x), (y - 1, x)):
                    inside = 0 <= yy < height and 0 <= xx < width
                    perimeter += not inside or sp[yy, xx] != s
        result += area / sp.size * 4 * math.pi * area / perimeter ** 2
    return result


def ev_loop(sp, image):
    mean = image.reshape(-1, image.shape[2]).mean(axis=0)
    explained = sum(np.sum(sp == s) * np.sum((image[sp == s].mean(axis=0) - mean) ** 2)
                    for s in np.unique(sp))
    total = np.sum((image - mean) ** 2)
    return explained / total if total else 1.0


# --------------------------------------------------------------------------------------------
# Exact answers on tiny maps


def test_perfect_segmentation():
    for gt in (QUADRANTS, QUADRANTS * 7 - 100):      # label values do not matter
        assert achievable_segmentation_accuracy(QUADRANTS, gt) == 1.0
        assert boundary_recall(QUADRANTS, gt, tolerance=0) == 1.0
        assert boundary_precision(QUADRANTS, gt, tolerance=0) == 1.0
        assert undersegmentation_error(QUADRANTS, gt) == 0.0
    assert number_of_superpixels(QUADRANTS) == 4


def test_finer_superpixels_are_perfect_for_asa_and_ue():
    pixels = np.arange(16).reshape(4, 4)
    assert achievable_segmentation_accuracy(pixels, QUADRANTS) == 1.0
    assert undersegmentation_error(pixels, QUADRANTS) == 0.0
    assert boundary_recall(pixels, QUADRANTS, tolerance=0) == 1.0
    assert number_of_superpixels(pixels) == 16


def test_one_superpixel_over_two_halves():
    gt = halves(4, 6, 3)
    single = np.zeros((4, 6), dtype=int)
    assert achievable_segmentation_accuracy(single, gt) == 0.5
    # Each half charges min(12, 12) = 12: UE = 24 / 24.
    assert undersegmentation_error(single, gt) == 1.0
    assert boundary_recall(single, gt, tolerance=3) == 0.0
    assert boundary_precision(single, gt, tolerance=3) == 1.0    # no superpixel boundary


def test_unequal_overlaps():
    gt = halves(4, 4, 2)                   # G0: columns 0-1, G1: columns 2-3
    sp = halves(4, 4, 3)                   # S0: columns 0-2 (12 px), S1: column 3 (4 px)
    assert achievable_segmentation_accuracy(sp, gt) == 12 / 16
    # G0: min(|S0∩G0|=8, |S0\G0|=4) = 4; G1: min(4, 8) + min(4, 0) = 4.
    assert undersegmentation_error(sp, gt) == 8 / 16
    gt_unequal = halves(4, 6, 2)
    single = np.zeros((4, 6), dtype=int)
    assert achievable_segmentation_accuracy(single, gt_unequal) == 16 / 24
    assert undersegmentation_error(single, gt_unequal) == 16 / 24


def test_boundary_map_convention():
    lab = halves(3, 4, 2)
    expected = np.zeros((3, 4), dtype=bool)
    expected[:, 1] = True                  # left side of the vertical edge
    np.testing.assert_array_equal(boundary_map(lab), expected)
    np.testing.assert_array_equal(boundary_map(lab.T), expected.T)   # upper side
    np.testing.assert_array_equal(boundary_map(QUADRANTS),
                                  [[0, 1, 0, 0], [1, 1, 1, 1], [0, 1, 0, 0], [0, 1, 0, 0]])


@pytest.mark.parametrize("shift", [1, 2, -1, -2])
def test_boundary_tolerance_with_shifted_boundary(shift):
    gt = halves(10, 12, 5)
    sp = halves(10, 12, 5 + shift)
    distance = abs(shift)
    for tol in range(4):
        expected = 1.0 if tol >= distance else 0.0
        assert boundary_recall(sp, gt, tolerance=tol) == expected
        assert boundary_precision(sp, gt, tolerance=tol) == expected
    # The default tolerance of a 10 x 12 image is round(0.0025 * 15.6) = 0.
    assert boundary_recall(sp, gt) == 0.0


def test_boundary_tolerance_is_chebyshev():
    # GT: a one-pixel segment at (0, 0), so its only boundary pixel is (0, 0). Superpixels: a
    # one-pixel segment at (1, 2), boundary pixels (1, 1), (0, 2), (1, 2). The nearest one,
    # (1, 1), is a diagonal step away: within t = 1 in the Chebyshev sense (Manhattan 2).
    gt = np.zeros((5, 6), dtype=int)
    gt[0, 0] = 1
    sp = np.zeros((5, 6), dtype=int)
    sp[1, 2] = 1
    assert boundary_map(gt).sum() == 1 and boundary_map(sp).sum() == 3
    assert boundary_recall(sp, gt, tolerance=0) == 0.0
    assert boundary_recall(sp, gt, tolerance=1) == 1.0
    assert boundary_precision(sp, gt, tolerance=0) == 0.0
    assert boundary_precision(sp, gt, tolerance=1) == 1 / 3
    assert boundary_precision(sp, gt, tolerance=2) == 1.0


def test_boundary_precision_with_extra_boundary():
    gt = halves(8, 8, 4)                   # GT boundary: column 3, 8 pixels
    sp = gt.copy()
    sp[4:, 4:] = 2                         # extra boundary: row 3, columns 4-7 (4 pixels)
    assert boundary_recall(sp, gt, tolerance=0) == 1.0
    assert boundary_precision(sp, gt, tolerance=0) == 8 / 12
    assert boundary_precision(sp, gt, tolerance=1) == 9 / 12
    assert boundary_precision(sp, gt, tolerance=2) == 10 / 12
    assert boundary_precision(sp, gt, tolerance=4) == 12 / 12


def test_default_tolerance():
    # 0.0025 * sqrt(481^2 + 321^2) = 0.0025 * 578.27 = 1.446 -> 1.
    assert default_tolerance(481, 321) == 1
    assert default_tolerance(321, 481) == 1
    assert default_tolerance(1000, 1000) == 4          # 3.54
    assert default_tolerance(10, 12) == 0
    assert default_tolerance(160, 120) == 1            # 0.0025 * 200 = 0.5, halves round up


def test_compactness_exact():
    assert compactness(np.zeros((5, 5), dtype=int)) == pytest.approx(math.pi / 4, rel=1e-15)
    assert compactness(QUADRANTS) == pytest.approx(math.pi / 4, rel=1e-15)
    assert compactness(np.arange(6).reshape(2, 3)) == pytest.approx(math.pi / 4, rel=1e-15)
    # A 1 x 4 bar: A = 4, P = 10.
    assert compactness(np.zeros((1, 4), dtype=int)) == pytest.approx(4 * math.pi * 4 / 100)
    # [0, 0, 1]: S0 A = 2, P = 6, weight 2/3; S1 A = 1, P = 4, weight 1/3.
    expected = 2 / 3 * 4 * math.pi * 2 / 36 + 1 / 3 * math.pi / 4
    assert compactness(np.array([[0, 0, 1]])) == pytest.approx(expected, rel=1e-15)


def test_explained_variation_exact():
    colours = np.array([[0.1, 0.2, 0.3], [0.9, 0.1, 0.5], [0.3, 0.3, 0.3], [0.0, 1.0, 0.0]])
    image = colours[QUADRANTS]
    assert explained_variation(QUADRANTS, image) == pytest.approx(1.0, rel=1e-14)
    assert explained_variation(np.arange(16).reshape(4, 4), image) == pytest.approx(1.0,
                                                                                     rel=1e-14)
    assert explained_variation(np.zeros((4, 4), dtype=int), image) == pytest.approx(0.0,
                                                                                     abs=1e-15)
    # Grey [0, 0, 1, 1] with superpixels [0, 0, 0, 1]: (3/36 + 1/4) / 1 = 1/3.
    grey = np.array([[0.0, 0.0, 1.0, 1.0]])
    assert explained_variation(np.array([[0, 0, 0, 1]]), grey) == pytest.approx(1 / 3)
    assert explained_variation(QUADRANTS, np.full((4, 4, 3), 0.5)) == 1.0   # constant image


# --------------------------------------------------------------------------------------------
# Against brute force on random maps


@pytest.mark.parametrize("shape", [(1, 1), (1, 7), (7, 1), (5, 6), (9, 13)])
def test_against_loops(shape):
    rng = np.random.default_rng(shape[0] * 100 + shape[1])
    for _ in range(5):
        sp = rng.integers(-3, 5, size=shape)
        gt = rng.integers(0, 3, size=shape) * 1000
        image = rng.random(shape + (3,))
        assert achievable_segmentation_accuracy(sp, gt) == pytest.approx(asa_loop(sp, gt))
        assert undersegmentation_error(sp, gt) == pytest.approx(ue_loop(sp, gt))
        assert compactness(sp) == pytest.approx(compactness_loop(sp))
        assert explained_variation(sp, image) == pytest.approx(ev_loop(sp, image))
        np.testing.assert_array_equal(boundary_map(sp), boundary_loop(sp))
        for tol in (0, 1, 2):
            assert boundary_recall(sp, gt, tol) == pytest.approx(
                hit_fraction_loop(boundary_loop(gt), boundary_loop(sp), tol))
            assert boundary_precision(sp, gt, tol) == pytest.approx(
                hit_fraction_loop(boundary_loop(sp), boundary_loop(gt), tol))
        assert number_of_superpixels(sp) == len(np.unique(sp))


def test_large_label_values_and_dtypes():
    rng = np.random.default_rng(5)
    sp = rng.integers(0, 6, size=(6, 8))
    gt = rng.integers(0, 3, size=(6, 8))
    image = rng.random((6, 8, 3))
    base = evaluate(sp, [gt], image, tolerance=1)
    for sp2 in (sp * 10**12 - 10**13, sp.astype(np.uint8), sp.astype(np.float32),
                np.asfortranarray(sp)):
        assert evaluate(sp2, [gt], image, tolerance=1) == base


# --------------------------------------------------------------------------------------------
# evaluate


def test_evaluate_rows():
    rng = np.random.default_rng(9)
    sp = rng.integers(0, 5, size=(7, 9))
    gts = [rng.integers(0, 3, size=(7, 9)) for _ in range(3)]
    image = rng.random((7, 9, 3))
    rows = evaluate(sp, gts, image, tolerance=1)
    assert [row["annotator"] for row in rows] == [0, 1, 2]
    for gt, row in zip(gts, rows):
        assert row == {
            "annotator": row["annotator"],
            "n_spixels": number_of_superpixels(sp),
            "asa": achievable_segmentation_accuracy(sp, gt),
            "boundary_recall": boundary_recall(sp, gt, 1),
            "boundary_precision": boundary_precision(sp, gt, 1),
            "undersegmentation_error": undersegmentation_error(sp, gt),
            "compactness": compactness(sp),
            "explained_variation": explained_variation(sp, image),
            "tolerance": 1,
        }
    assert evaluate(sp, gts[:1], image)[0]["tolerance"] == default_tolerance(7, 9)


# --------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize("func", [achievable_segmentation_accuracy, undersegmentation_error,
                                  boundary_recall, boundary_precision])
def test_shape_mismatch(func):
    with pytest.raises(ValueError, match="shapes differ"):
        func(np.zeros((4, 4), dtype=int), np.zeros((4, 5), dtype=int))


@pytest.mark.parametrize("bad, match", [
    (np.zeros(4, dtype=int), "2-D"),
    (np.zeros((2, 2, 1), dtype=int), "2-D"),
    (np.zeros((0, 3), dtype=int), "empty"),
    (np.array([[0.5, 1.0]]), "integer-valued"),
    (np.array([["a", "b"]]), "integer"),
])
def test_bad_label_maps(bad, match):
    good = np.zeros(bad.shape if bad.ndim == 2 and bad.size else (1, 2), dtype=int)
    for call in (lambda: achievable_segmentation_accuracy(bad, good),
                 lambda: achievable_segmentation_accuracy(good, bad),
                 lambda: compactness(bad),
                 lambda: number_of_superpixels(bad),
                 lambda: boundary_map(bad)):
        with pytest.raises(ValueError, match=match):
            call()


def test_bad_tolerance():
    sp = np.zeros((3, 3), dtype=int)
    for tol, match in ((-1, ">= 0"), (1.5, "int"), (True, "int")):
        with pytest.raises(ValueError, match=match):
            boundary_recall(sp, sp, tol)
        with pytest.raises(ValueError, match=match):
            boundary_precision(sp, sp, tol)


def test_bad_image():
    sp = np.zeros((3, 4), dtype=int)
    with pytest.raises(ValueError, match="image"):
        explained_variation(sp, np.zeros((4, 3, 3)))
    with pytest.raises(ValueError, match="image"):
        explained_variation(sp, np.zeros((3, 4, 3, 1)))
    with pytest.raises(ValueError, match="non-finite"):
        explained_variation(sp, np.full((3, 4), np.nan))


def test_evaluate_errors():
    sp = np.zeros((3, 4), dtype=int)
    image = np.zeros((3, 4, 3))
    with pytest.raises(ValueError, match="at least one"):
        evaluate(sp, [], image)
    with pytest.raises(ValueError, match="list"):
        evaluate(sp, sp, image)
    with pytest.raises(ValueError, match="shapes differ"):
        evaluate(sp, [sp, np.zeros((4, 3), dtype=int)], image)


def test_public_names():
    for name in metrics.__all__:
        assert callable(getattr(metrics, name))
