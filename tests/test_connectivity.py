"""Tests of connectivity enforcement (docs/LAYERS.md#connectivity-enforcement): hand-worked
vectors, the compiled core
against the pure-Python transcription, properties of the output, and input errors."""

import numpy as np
import pytest
from scipy import ndimage

from ssn import native
from ssn.connectivity import connectivity_sizes, enforce_connectivity
from ssn.reference.connectivity import enforce_connectivity as enforce_connectivity_reference

IMPLEMENTATIONS = [enforce_connectivity, enforce_connectivity_reference]

SPEC_VECTORS = [
    ([[5, 5, 7, 7], [5, 9, 7, 7], [5, 5, 9, 9], [8, 5, 9, 9]], 2, 100,
     [[0, 0, 1, 1], [0, 0, 1, 1], [0, 0, 2, 2], [0, 0, 2, 2]]),
    ([[1, 2, 2], [2, 2, 2], [3, 3, 3]], 2, 100,
     [[0, 0, 0], [0, 0, 0], [1, 1, 1]]),
    ([[4, 4, 4, 4, 4, 4]], 1, 4,
     [[0, 0, 0, 0, 1, 1]]),
]

RANDOM_SHAPES = [(1, 1), (1, 2), (2, 1), (1, 17), (17, 1), (2, 2), (3, 5), (7, 9), (9, 7),
                 (16, 16), (20, 31)]


def random_labels(rng, shape):
    """Blocky random labels with noise: segments of varied sizes, holes and repeated values."""
    height, width = shape
    n_values = int(rng.integers(1, 6))
    cell = int(rng.integers(1, 6))
    coarse = rng.integers(0, n_values, size=(height // cell + 1, width // cell + 1))
    labels = np.kron(coarse, np.ones((cell, cell), dtype=np.int64))[:height, :width]
    noise = rng.random(shape) < rng.uniform(0.0, 0.3)
    return np.where(noise, rng.integers(0, n_values, size=shape), labels)


def n_components(labels):
    """Total number of 4-connected same-label components."""
    return sum(ndimage.label(labels == value)[1] for value in np.unique(labels))


# --------------------------------------------------------------------------------------------
# Hand-worked vectors and the reference oracle


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=["compiled", "reference"])
@pytest.mark.parametrize("labels, min_size, max_size, expected", SPEC_VECTORS)
def test_spec_vectors(impl, labels, min_size, max_size, expected):
    out = impl(np.array(labels), min_size, max_size)
    assert out.dtype == np.int32
    np.testing.assert_array_equal(out, np.array(expected))


@pytest.mark.parametrize("shape", RANDOM_SHAPES)
def test_compiled_equals_reference(shape):
    rng = np.random.default_rng(sum(shape) * 101 + shape[0])
    n_pixels = shape[0] * shape[1]
    for _ in range(12):
        labels = random_labels(rng, shape)
        min_size = int(rng.integers(1, n_pixels + 3))
        if rng.random() < 0.5:
            min_size = int(rng.integers(1, 4))
        max_size = int(rng.integers(min_size, n_pixels + 5))
        expected = enforce_connectivity_reference(labels, min_size, max_size)
        out = enforce_connectivity(labels, min_size, max_size)
        np.testing.assert_array_equal(out, expected, err_msg=f"{min_size=} {max_size=}")


def test_compiled_equals_reference_grid_with_noise():
    """A scaled-down SSN-like map: a superpixel grid with scattered wrong labels."""
    rng = np.random.default_rng(7)
    height, width = 40, 60
    grid = (np.arange(height)[:, None] // 8) * 8 + np.arange(width)[None, :] // 8
    labels = np.where(rng.random((height, width)) < 0.25, rng.integers(0, 40, (height, width)),
                      grid)
    for n_spixels in (10, 40, 200):
        min_size, max_size = connectivity_sizes(height, width, n_spixels)
        np.testing.assert_array_equal(enforce_connectivity(labels, min_size, max_size),
                                      enforce_connectivity_reference(labels, min_size, max_size))


@pytest.mark.slow
@pytest.mark.parametrize("n_spixels, min_factor, max_factor", [
    (100, 0.06, 3.0), (1000, 0.06, 3.0), (400, 0.5, 0.8), (400, 0.3, 0.3)])
def test_compiled_equals_reference_on_ssn_labels_at_full_size(n_spixels, min_factor, max_factor):
    """Raw SSN labels of a 321x481 photo: the real sizes, and thresholds that merge
    and cut most superpixels (the compiled code labels uncut components whole and runs
    the BFS only on the others)."""
    from skimage import data

    from ssn.inference import superpixels
    photo = data.astronaut()[:321, :481]
    labels = superpixels(photo, n_spixels, features="pixel", enforce_connectivity=False)
    sizes = connectivity_sizes(*labels.shape, n_spixels, min_factor, max_factor)
    expected = enforce_connectivity_reference(labels, *sizes)
    np.testing.assert_array_equal(enforce_connectivity(labels, *sizes), expected)
    assert expected.max() > 0.5 * n_spixels


def test_matches_scikit_image_at_full_size():
    """scikit-image's Cython loop (private API; the origin of the original's) at BSDS size."""
    slic = pytest.importorskip("skimage.segmentation._slic")
    cython = getattr(slic, "_enforce_label_connectivity_cython", None)
    if cython is None:
        pytest.skip("scikit-image has no _enforce_label_connectivity_cython")
    rng = np.random.default_rng(21)
    height, width = 321, 481
    for n_spixels in (100, 1000):
        cell = int(np.sqrt(height * width / n_spixels))
        grid = (np.arange(height)[:, None] // cell) * 1000 + np.arange(width)[None, :] // cell
        labels = np.where(rng.random((height, width)) < 0.2,
                          rng.integers(0, 50, (height, width)), grid)
        min_size, max_size = connectivity_sizes(height, width, n_spixels)
        expected = cython(labels[None].astype(np.intp), min_size, max_size, 0)[0]
        np.testing.assert_array_equal(enforce_connectivity(labels, min_size, max_size),
                                      expected)


# --------------------------------------------------------------------------------------------
# Properties


@pytest.mark.parametrize("shape", RANDOM_SHAPES)
def test_properties_with_large_max_size(shape):
    rng = np.random.default_rng(shape[0] * 1000 + shape[1])
    n_pixels = shape[0] * shape[1]
    for _ in range(10):
        labels = random_labels(rng, shape)
        min_size = int(rng.integers(1, 8))
        out = enforce_connectivity(labels, min_size, max(min_size, n_pixels + 1))
        n_labels = int(out.max()) + 1
        # Consecutive from 0.
        np.testing.assert_array_equal(np.unique(out), np.arange(n_labels))
        # Each label is exactly one 4-connected component.
        assert n_components(out) == n_labels
        # No label smaller than min_size unless the whole image is.
        sizes = np.bincount(out.ravel())
        if n_pixels >= min_size:
            assert sizes.min() >= min_size
        else:
            assert n_labels == 1
        # Never more labels than input components; a connected input with min_size 1 and a
        # large max_size keeps its partition.
        assert n_labels <= n_components(labels)
        if min_size == 1:
            assert n_labels == n_components(labels)


def test_max_size_splits_segments():
    labels = np.zeros((10, 10), dtype=np.int64)
    out = enforce_connectivity(labels, 1, 30)
    sizes = np.bincount(out.ravel())
    assert sizes.max() <= 30
    assert sizes.sum() == 100
    np.testing.assert_array_equal(np.unique(out), np.arange(out.max() + 1))


def test_all_small_image_is_label_zero():
    out = enforce_connectivity(np.array([[1, 2], [3, 4]]), 10, 20)
    np.testing.assert_array_equal(out, np.zeros((2, 2)))


def test_first_small_component_takes_label_zero_with_next():
    # The lone 1 at the corner has no labelled neighbour: it gets 0, and so does the next piece.
    out = enforce_connectivity(np.array([[1, 2, 2, 2]]), 2, 10)
    np.testing.assert_array_equal(out, [[0, 0, 0, 0]])


def test_small_component_joins_last_encountered_neighbour():
    # The lone 9 meets the labelled left piece (-x, label 1, 5 pixels) before the labelled top
    # piece (-y, label 0, 3 pixels): it joins the top one, the last met, not the largest.
    labels = np.array([[1, 1, 1],
                       [2, 9, 3],
                       [2, 3, 3],
                       [2, 2, 2]])
    expected = [[0, 0, 0],
                [1, 0, 2],
                [1, 2, 2],
                [1, 1, 1]]
    for impl in IMPLEMENTATIONS:
        np.testing.assert_array_equal(impl(labels, 2, 100), expected)


# --------------------------------------------------------------------------------------------
# Input handling and errors


def test_dtypes_and_layouts():
    rng = np.random.default_rng(3)
    labels = random_labels(rng, (13, 11))
    expected = enforce_connectivity(labels.astype(np.int32), 3, 40)
    for variant in (labels.astype(np.int64), labels.astype(np.uint8),
                    labels.astype(np.float32), labels * 10**12 - 5 * 10**12,
                    np.asfortranarray(labels)):
        np.testing.assert_array_equal(enforce_connectivity(variant, 3, 40), expected)
    transposed = np.ascontiguousarray(labels.T).T   # non-C-contiguous view
    np.testing.assert_array_equal(enforce_connectivity(transposed, 3, 40), expected)
    bools = labels > 1
    np.testing.assert_array_equal(enforce_connectivity(bools, 3, 40),
                                  enforce_connectivity_reference(bools.astype(int), 3, 40))


def test_input_not_modified():
    labels = np.array([[1, 2], [2, 1]], dtype=np.int32)
    before = labels.copy()
    enforce_connectivity(labels, 2, 4)
    np.testing.assert_array_equal(labels, before)


@pytest.mark.parametrize("impl", IMPLEMENTATIONS, ids=["compiled", "reference"])
@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (4, 0)])
def test_empty(impl, shape):
    out = impl(np.zeros(shape, dtype=np.int64), 1, 1)
    assert out.shape == shape and out.dtype == np.int32


@pytest.mark.parametrize("labels, match", [
    (np.zeros(5, dtype=int), "2-D"),
    (np.zeros((2, 2, 2), dtype=int), "2-D"),
    (np.array([[0.5, 1.0]]), "integer-valued"),
    (np.array([[np.nan, 1.0]]), "integer-valued"),
    (np.array([["a", "b"]]), "integer"),
    (np.array([[1 + 1j]]), "integer"),
])
def test_bad_labels(labels, match):
    with pytest.raises(ValueError, match=match):
        enforce_connectivity(labels, 1, 10)


@pytest.mark.parametrize("min_size, max_size, match", [
    (0, 10, "min_size must be >= 1"),
    (-1, 10, "min_size must be >= 1"),
    (5, 4, "max_size must be >= min_size"),
    (1.5, 4, "min_size must be an int"),
    (1, 4.0, "max_size must be an int"),
    (True, 4, "min_size must be an int"),
])
def test_bad_sizes(min_size, max_size, match):
    for impl in IMPLEMENTATIONS:
        with pytest.raises(ValueError, match=match):
            impl(np.zeros((2, 2), dtype=int), min_size, max_size)


def test_huge_sizes_accepted():
    labels = np.array([[1, 1, 2]])
    np.testing.assert_array_equal(enforce_connectivity(labels, 1, 2**40), [[0, 0, 1]])
    np.testing.assert_array_equal(enforce_connectivity(labels, 2**40, 2**41), [[0, 0, 0]])


# --------------------------------------------------------------------------------------------
# Parameters


@pytest.mark.parametrize("height, width, n, expected", [
    (481, 321, 100, (92, 4632)),
    (321, 481, 100, (92, 4632)),
    (481, 321, 500, (18, 926)),
    (10, 10, 100, (1, 3)),      # min int(0.06) = 0 is raised to 1 (same output)
    (1, 1, 5, (1, 1)),          # max int(0.6) = 0 is raised to 1 (same output)
])
def test_connectivity_sizes(height, width, n, expected):
    assert connectivity_sizes(height, width, n) == expected


def test_connectivity_sizes_zero_behaves_like_one():
    # The clamp in connectivity_sizes changes nothing: sizes 0 and 1 act alike in the loop.
    rng = np.random.default_rng(11)
    labels = random_labels(rng, (6, 7))
    np.testing.assert_array_equal(enforce_connectivity(labels, 1, 1),
                                  np.arange(42).reshape(6, 7))


@pytest.mark.parametrize("args", [(0, 5, 10), (5, 0, 10), (5, 5, 0), (5, 5, 1.5)])
def test_connectivity_sizes_errors(args):
    with pytest.raises(ValueError):
        connectivity_sizes(*args)


def test_connectivity_sizes_factor_errors():
    with pytest.raises(ValueError, match="min_factor"):
        connectivity_sizes(10, 10, 2, min_factor=4.0, max_factor=3.0)


def test_load_native_exports_connectivity():
    lib = native.load_native()
    assert hasattr(lib, "ssn_enforce_connectivity")
