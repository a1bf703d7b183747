"""Tests of the float64 NumPy reference (ssn.reference) against docs/LAYERS.md, by hand and by
central differences. No Caffe needed."""
import itertools

import numpy as np
import pytest

from ssn.reference import (
    concat_convolution,
    grid,
    interp,
    loss_without_softmax,
    passoc,
    pixel_feature,
    rel_to_abs_index,
    smear,
    spixel_feature,
    spixel_feature2,
)

# Random-input geometry: odd sizes, batch 2, a 2 x 3 grid.
N, C, H, W = 2, 3, 7, 9
GRID_H, GRID_W = 2, 3
K = GRID_H * GRID_W
EPS = 1e-6


# --------------------------------------------------------------------------------------------
# Helpers


def central_difference(func, x, index, eps=EPS):
    """d func / d x[index] by central differences (x is not modified)."""
    plus, minus = x.copy(), x.copy()
    plus[index] += eps
    minus[index] -= eps
    return (func(plus) - func(minus)) / (2.0 * eps)


def check_gradient(func, x, analytic, rng, max_points=60, n_directions=2, rtol=1e-5,
                   atol=1e-6, expect_nonzero=True):
    """Compare an analytic gradient of the scalar func at x with central differences.

    Checks every element (or a random subset of max_points of them on larger inputs) and
    directional derivatives along random directions, which cover all elements at once.
    """
    assert analytic.shape == x.shape
    if expect_nonzero:
        assert np.any(analytic != 0), "analytic gradient is all zeros"
    scale = max(1.0, float(np.max(np.abs(analytic))))
    if x.size <= max_points:
        flat = np.arange(x.size)
    else:
        flat = rng.choice(x.size, size=max_points, replace=False)
    for f in flat:
        index = np.unravel_index(f, x.shape)
        numeric = central_difference(func, x, index)
        assert numeric == pytest.approx(analytic[index], rel=rtol, abs=atol * scale), index
    for _ in range(n_directions):
        direction = rng.standard_normal(x.shape)

        def along(t, direction=direction):
            return func(x + t[0] * direction)

        numeric = central_difference(along, np.zeros(1), (0,))
        expected = float(np.sum(analytic * direction))
        assert numeric == pytest.approx(expected, rel=rtol, abs=atol * scale * x.size ** 0.5)


def random_cells(n=N, height=H, width=W):
    """The floor-rule initial map as an N x 1 x H x W float blob."""
    cells = grid.init_cells(height, width, GRID_H, GRID_W).astype(np.float64)
    return np.broadcast_to(cells, (n, 1, height, width)).copy()


def spec15():
    """The hand-worked example: F (1 x 2 x 4 x 6), Q (1 x 9 x 4 x 6), init (1 x 1 x 4 x 6)."""
    y, x = np.mgrid[0:4, 0:6]
    f = np.stack([6 * y + x, 2 * ((6 * y + x) % 5)]).astype(np.float64)[None]
    q = np.broadcast_to(((np.arange(9) + 1) / 45.0)[:, None, None], (9, 4, 6))[None].copy()
    init = grid.init_cells(4, 6, 2, 3).astype(np.float64)[None, None]
    return f, q, init


def softmax(x, axis=1):
    e = np.exp(x - np.max(x, axis=axis, keepdims=True))
    return e / np.sum(e, axis=axis, keepdims=True)


def argmax_largest(x, axis=1):
    """Caffe's ArgMax: ties go to the largest index."""
    flipped = np.flip(x, axis=axis)
    return x.shape[axis] - 1 - np.argmax(flipped, axis=axis)


# --------------------------------------------------------------------------------------------
# Grid (sections 1 and 7)


def original_flat_neighbour(i0, c, grid_h, grid_w):
    """The original's flat-index neighbour algorithm: (index, valid)."""
    k = grid_h * grid_w
    dr, dc = c // 3 - 1, c % 3 - 1
    valid = True
    h = i0 + dr * grid_w
    if h >= k or h < 0:
        h, valid = i0, False
    if (dc == 1 and (h + 1) % grid_w == 0) or (dc == -1 and h % grid_w == 0):
        dc, valid = 0, False
    w = h + dc
    if 0 <= w < k:
        return w, valid
    return h, False


def test_section1_example_valid_channels():
    valid = [c for c in range(9) if grid.neighbour_index(0, c, 2, 3) >= 0]
    assert valid == [4, 5, 7, 8]
    assert grid.neighbour_index(0, 8, 2, 3) == 4
    assert grid.neighbour_index(5, 0, 2, 3) == 1
    assert grid.neighbour_index(5, 2, 2, 3) == -1


def test_neighbour_index_matches_original_flat_algorithm():
    for grid_h, grid_w in itertools.product(range(1, 7), repeat=2):
        for i0 in range(grid_h * grid_w):
            r0, c0 = divmod(i0, grid_w)
            for c in range(9):
                index, valid = original_flat_neighbour(i0, c, grid_h, grid_w)
                two_d = (0 <= r0 + c // 3 - 1 < grid_h) and (0 <= c0 + c % 3 - 1 < grid_w)
                assert valid == two_d
                expected = index if valid else -1
                assert grid.neighbour_index(i0, c, grid_h, grid_w) == expected
                assert grid.neighbour_index_clamped(i0, c, grid_h, grid_w) == index


def test_grid_shape_table():
    assert grid.grid_shape(100, 201, 201) == (10, 10)
    table = {100: (8, 12), 200: (11, 17), 300: (14, 21), 400: (16, 24), 500: (18, 27),
             600: (20, 29), 800: (23, 34), 1000: (25, 38), 1200: (28, 42)}
    for n, shape in table.items():
        assert grid.grid_shape(n, 321, 481) == shape  # height 321, width 481
    with pytest.raises(ValueError):
        grid.grid_shape(0, 10, 10)


def test_init_cells():
    expected = [[0, 0, 1, 1, 2, 2], [0, 0, 1, 1, 2, 2], [3, 3, 4, 4, 5, 5], [3, 3, 4, 4, 5, 5]]
    np.testing.assert_array_equal(grid.init_cells(4, 6, 2, 3), expected)
    counts = np.bincount(grid.init_cells(201, 201, 10, 10).ravel())
    assert counts[0] == 441
    assert set(counts[1:10]) == {420} and set(counts[10::10]) == {420}
    assert set(counts.reshape(10, 10)[1:, 1:].ravel()) == {400}


# --------------------------------------------------------------------------------------------
# PixelFeature (3.1)


def test_pixel_feature_forward_modes():
    rng = np.random.default_rng(1)
    image = rng.standard_normal((N, C, H, W))
    ps, cs, oh, ow = 0.5, 0.26, 1.5, -2.0
    y, x = np.mgrid[0:H, 0:W]
    pos = np.broadcast_to(np.stack([ps * y + oh, ps * x + ow]), (N, 2, H, W))
    kwargs = dict(pos_scale=ps, color_scale=cs, offset_h=oh, offset_w=ow)
    expected = {
        "POSITION": pos,
        "POSITION_AND_RGB": np.concatenate([pos, cs * image], axis=1),
        "RGB_AND_POSITION": np.concatenate([cs * image, pos], axis=1),
        "RGB": cs * image,
    }
    for mode, want in expected.items():
        np.testing.assert_allclose(pixel_feature.forward(image, mode, **kwargs), want,
                                   rtol=0, atol=1e-12)
    for bad in ("RANDOM_POSITION", "WARPED_POSITION", "nonsense", 7):
        with pytest.raises(ValueError):
            pixel_feature.forward(image, bad)


@pytest.mark.parametrize("mode", ["POSITION_AND_RGB", "RGB_AND_POSITION", "RGB", "POSITION"])
def test_pixel_feature_backward(mode):
    rng = np.random.default_rng(2)
    image = rng.standard_normal((N, C, H, W))
    cs = 0.26
    top = pixel_feature.forward(image, mode, pos_scale=0.3, color_scale=cs)
    r = rng.standard_normal(top.shape)
    grad = pixel_feature.backward(image, r, mode, color_scale=cs)

    def loss(img):
        return np.sum(pixel_feature.forward(img, mode, pos_scale=0.3, color_scale=cs) * r)

    check_gradient(loss, image, grad, rng, expect_nonzero=mode != "POSITION")
    if mode == "POSITION":
        assert np.all(grad == 0)


# --------------------------------------------------------------------------------------------
# SpixelFeature (3.2)

SPIXEL_SCALES = dict(xy_scale=0.7, rgb_scale=1.3, rgbxy_xy_scale=0.4, rgbxy_rgb_scale=2.1)


def test_spixel_feature_spec15():
    f, _, init = spec15()
    means, smeared = spixel_feature.forward(f, init, 6, "AVGRGB", ignore_idx_value=-10,
                                            ignore_feature_value=255)
    expected = [[3.5, 5.5, 7.5, 15.5, 17.5, 19.5], [2, 6, 2.5, 6, 2.5, 4]]
    np.testing.assert_allclose(means[0, :, 0], expected, rtol=0, atol=1e-12)
    ids = init[0, 0].astype(int)
    np.testing.assert_allclose(smeared[0], means[0, :, 0][:, ids], rtol=0, atol=0)


def test_spixel_feature_layouts():
    rng = np.random.default_rng(3)
    f = rng.standard_normal((1, 2, 3, 4))
    idx = np.zeros((1, 1, 3, 4))  # a single superpixel holding every pixel
    y, x = np.mgrid[0:3, 0:4]
    mean_f = f[0].reshape(2, -1).mean(axis=1)
    my, mx = y.mean(), x.mean()
    s = SPIXEL_SCALES
    xy, rgb = s["xy_scale"], s["rgb_scale"]
    rxy, rrgb = s["rgbxy_xy_scale"], s["rgbxy_rgb_scale"]
    expected = {
        "AVGXY": [xy * my, xy * mx],
        "AVGRGBXY": list(rrgb * mean_f) + [rxy * my, rxy * mx],
        "AVGXYRGBXY": [xy * my, xy * mx] + list(rrgb * mean_f) + [rxy * my, rxy * mx],
        "AVGRGB": list(rgb * mean_f),
        "AVGRGBXYRGBXY": (list(rgb * mean_f) + [xy * my, xy * mx] + list(rrgb * mean_f)
                          + [rxy * my, rxy * mx]),
    }
    for number, (mode, want) in enumerate(expected.items()):
        means, _ = spixel_feature.forward(f, idx, 1, mode, **s)
        np.testing.assert_allclose(means[0, :, 0, 0], want, rtol=1e-12, atol=1e-12)
        by_number, _ = spixel_feature.forward(f, idx, 1, number, **s)
        np.testing.assert_array_equal(by_number, means)
    with pytest.raises(ValueError):
        spixel_feature.forward(f, idx, 1, "AVGFOO")


def ignored_index_map(rng, ignore=-10.0):
    """Grid ids with a few ignored pixels (stored as ignore - 0.6: truncation still matches)."""
    idx = random_cells()
    mask = rng.random(idx.shape) < 0.15
    idx[mask] = ignore - 0.6 if ignore < 0 else ignore + 0.6
    return idx, mask


@pytest.mark.slow
@pytest.mark.parametrize("mode", spixel_feature.MODES)
def test_spixel_feature_backward(mode):
    rng = np.random.default_rng(4)
    f = rng.standard_normal((N, C, H, W))
    idx, _ = ignored_index_map(rng)
    m = K + 2  # two superpixels beyond the grid stay empty
    kwargs = dict(mode=mode, ignore_idx_value=-10.0, ignore_feature_value=255.0, **SPIXEL_SCALES)
    means, smeared = spixel_feature.forward(f, idx, m, **kwargs)
    r_means = rng.standard_normal(means.shape)
    r_smeared = rng.standard_normal(smeared.shape)

    def loss(feats):
        a, b = spixel_feature.forward(feats, idx, m, **kwargs)
        return np.sum(a * r_means) + np.sum(b * r_smeared)

    grad = spixel_feature.backward(f, idx, m, r_means, r_smeared, **kwargs)
    check_gradient(loss, f, grad, rng, expect_nonzero=mode != "AVGXY")
    if mode == "AVGXY":
        assert np.all(grad == 0)

    def means_only(feats):
        return np.sum(spixel_feature.forward(feats, idx, m, **kwargs)[0] * r_means)

    grad = spixel_feature.backward(f, idx, m, r_means, **kwargs)
    check_gradient(means_only, f, grad, rng, expect_nonzero=mode != "AVGXY")


def test_spixel_feature_backward_reads_feature_twice():
    """AVGRGBXYRGBXY reads F twice; its gradient sums both channels' contributions."""
    f = np.arange(4.0).reshape(1, 1, 2, 2)
    idx = np.zeros((1, 1, 2, 2))
    g = np.zeros((1, 6, 1, 1))
    g[0, 0] = 1.0  # rgb_scale * F
    g[0, 3] = 1.0  # rgbxy_rgb_scale * F
    grad = spixel_feature.backward(f, idx, 1, g, mode="AVGRGBXYRGBXY", rgb_scale=2.0,
                                   rgbxy_rgb_scale=3.0)
    np.testing.assert_allclose(grad, np.full(f.shape, (2.0 + 3.0) / 4.0))


def test_spixel_feature_ignore_and_empty():
    f = np.arange(12.0).reshape(1, 1, 3, 4)
    idx = np.array([[0, 0, -10, 2], [0, -10.9, 2, 2], [-10, 2, 2, 2]], dtype=float)[None, None]
    means, smeared = spixel_feature.forward(f, idx, 4, "AVGRGB", ignore_idx_value=-10,
                                            ignore_feature_value=255)
    # superpixel 0: pixels 0, 1, 4; superpixel 2: 3, 6, 7, 9, 10, 11; 1 and 3 empty.
    np.testing.assert_allclose(means[0, 0, 0], [5.0 / 3.0, 255, 46.0 / 6.0, 255])
    expected = np.where(idx[0, 0] == 0, 5.0 / 3.0, np.where(idx[0, 0] == 2, 46.0 / 6.0, 255))
    np.testing.assert_allclose(smeared[0, 0], expected)
    g = np.ones((1, 1, 1, 4))
    grad = spixel_feature.backward(f, idx, 4, g, mode="AVGRGB", ignore_idx_value=-10)
    want = np.where(idx[0, 0] == 0, 1.0 / 3.0, np.where(idx[0, 0] == 2, 1.0 / 6.0, 0.0))
    np.testing.assert_allclose(grad[0, 0], want)
    # A smeared diff at an ignored pixel goes nowhere.
    sd = np.zeros((1, 1, 3, 4))
    sd[0, 0, 0, 2] = 5.0
    grad = spixel_feature.backward(f, idx, 4, np.zeros_like(g), sd, mode="AVGRGB",
                                   ignore_idx_value=-10)
    assert np.all(grad == 0)


def test_spixel_feature_index_out_of_range():
    f = np.zeros((1, 1, 2, 2))
    for bad in (4.0, -2.0, 7.5):
        idx = np.zeros((1, 1, 2, 2))
        idx[0, 0, 1, 1] = bad
        with pytest.raises(ValueError, match="out of range"):
            spixel_feature.forward(f, idx, 4, "AVGRGB", ignore_idx_value=-1)
        with pytest.raises(ValueError, match="out of range"):
            spixel_feature.backward(f, idx, 4, np.zeros((1, 1, 1, 4)), mode="AVGRGB")
    idx = np.array([[-0.5, 3.9], [-1.2, 0]])[None, None]  # truncates to 0, 3, -1 (ignored), 0
    means, _ = spixel_feature.forward(f + 1.0, idx, 4, "AVGRGB", ignore_idx_value=-1)
    np.testing.assert_allclose(means[0, 0, 0], [1.0, -1000.0, -1000.0, 1.0])


# --------------------------------------------------------------------------------------------
# Passoc (3.3)


def test_passoc_spec15():
    f, _, init = spec15()
    s0, _ = spixel_feature.forward(f, init, 6, "AVGRGB", ignore_idx_value=-10,
                                   ignore_feature_value=255)
    dist = passoc.forward(f, s0, init, 2, 3, scale=-1.0, invalid_distance=10000.0)
    assert dist.shape == (1, 9, 4, 6)
    np.testing.assert_allclose(
        dist[0, :, 1, 2],
        [-10000, -10000, -10000, -36.25, -6.25, -12.5, -56.25, -102.5, -136.25], rtol=1e-12)
    np.testing.assert_allclose(
        dist[0, :, 0, 0],
        [-10000, -10000, -10000, -10000, -16.25, -66.25, -10000, -276.25, -312.5], rtol=1e-12)
    default = passoc.forward(f, s0, init, 2, 3, scale=-1.0)
    assert default[0, 0, 0, 0] == -1e30
    valid = dist != -10000
    np.testing.assert_array_equal(default[valid], dist[valid])


def test_softmax_argmax_and_rel_to_abs_spec15():
    f, _, init = spec15()
    s0, _ = spixel_feature.forward(f, init, 6, "AVGRGB", ignore_idx_value=-10,
                                   ignore_feature_value=255)
    expected_argmax = [[4, 4, 3, 4, 3, 4], [4, 5, 4, 4, 4, 4], [4, 4, 3, 4, 3, 3],
                       [4, 4, 4, 5, 4, 4]]
    expected_abs = [[0, 0, 0, 1, 1, 2], [0, 1, 1, 1, 2, 2], [3, 3, 3, 4, 4, 4],
                    [3, 3, 4, 5, 5, 5]]
    for invalid in (10000.0, 1e30):
        dist = passoc.forward(f, s0, init, 2, 3, scale=-1.0, invalid_distance=invalid)
        rel = argmax_largest(softmax(dist), axis=1)
        np.testing.assert_array_equal(rel[0], expected_argmax)
        absolute = rel_to_abs_index.forward(rel[:, None].astype(float), init, 2, 3)
        assert absolute.shape == (1, 1, 4, 6)
        np.testing.assert_array_equal(absolute[0, 0], expected_abs)


@pytest.mark.slow
def test_passoc_backward():
    rng = np.random.default_rng(5)
    f = rng.standard_normal((N, C, H, W))
    s = rng.standard_normal((N, C, 1, K))
    cells = random_cells()
    r = rng.standard_normal((N, 9, H, W))
    scale = -0.7
    grad_f, grad_s = passoc.backward(f, s, cells, GRID_H, GRID_W, r, scale=scale)
    # invalid_distance 0 keeps the objective free of the huge constant; it has no gradient.
    check_gradient(lambda v: np.sum(passoc.forward(v, s, cells, GRID_H, GRID_W, scale, 0.0) * r),
                   f, grad_f, rng)
    check_gradient(lambda v: np.sum(passoc.forward(f, v, cells, GRID_H, GRID_W, scale, 0.0) * r),
                   s, grad_s, rng)


def test_passoc_invalid_channels_and_bad_cells():
    rng = np.random.default_rng(6)
    f = rng.standard_normal((1, 2, 4, 6))
    s = rng.standard_normal((1, 2, 1, 6))
    _, _, init = spec15()
    dist = passoc.forward(f, s, init, 2, 3, scale=2.0, invalid_distance=5.0)
    assert dist[0, 0, 0, 0] == 10.0 and dist[0, 8, 3, 5] == 10.0
    r = np.zeros((1, 9, 4, 6))
    r[0, 0, 0, 0] = 1.0  # invalid channel: no gradient
    grad_f, grad_s = passoc.backward(f, s, init, 2, 3, r, scale=2.0)
    assert np.all(grad_f == 0) and np.all(grad_s == 0)
    bad = init.copy()
    bad[0, 0, 2, 2] = 6.0
    with pytest.raises(ValueError, match="out of range"):
        passoc.forward(f, s, bad, 2, 3)
    bad[0, 0, 2, 2] = -1.0
    with pytest.raises(ValueError, match="out of range"):
        passoc.backward(f, s, bad, 2, 3, r)


# --------------------------------------------------------------------------------------------
# SpixelFeature2 (3.4)


def test_spixel_feature2_spec15():
    f, q, init = spec15()
    weights = spixel_feature2.weights(q, init, 2, 3)
    np.testing.assert_allclose(
        weights[0], [1.066667, 1.866667, 1.422222, 2.133333, 3.466667, 2.488889], atol=1e-6)
    s = spixel_feature2.forward(f, q, init, 2, 3)
    expected = [[7.333333, 8.547619, 10.125, 8.916667, 9.910256, 11.142857],
                [4.041667, 3.761905, 4.0, 4.083333, 3.794872, 3.892857]]
    np.testing.assert_allclose(s[0, :, 0], expected, atol=1e-6)


@pytest.mark.slow
def test_spixel_feature2_backward():
    rng = np.random.default_rng(7)
    f = rng.standard_normal((N, C, H, W))
    q = rng.uniform(0.1, 1.0, (N, 9, H, W))
    cells = random_cells()
    r = rng.standard_normal((N, C, 1, K))
    grad_f, grad_q = spixel_feature2.backward(f, q, cells, GRID_H, GRID_W, r)
    check_gradient(lambda v: np.sum(spixel_feature2.forward(v, q, cells, GRID_H, GRID_W) * r),
                   f, grad_f, rng)
    check_gradient(lambda v: np.sum(spixel_feature2.forward(f, v, cells, GRID_H, GRID_W) * r),
                   q, grad_q, rng)


def test_spixel_feature2_threshold():
    rng = np.random.default_rng(8)
    f = rng.standard_normal((1, 2, 4, 6))
    _, _, init = spec15()
    q = np.zeros((1, 9, 4, 6))
    q[0, 4, 0, 0] = 0.001  # exactly at the threshold: superpixel 0 is alive
    q[0, 4, 3, 5] = 0.000999  # just below: superpixel 5 is dead
    s = spixel_feature2.forward(f, q, init, 2, 3)
    np.testing.assert_allclose(s[0, :, 0, 0], f[0, :, 0, 0], rtol=1e-12)
    assert np.all(s[0, :, 0, 1:] == 0)
    g = np.ones((1, 2, 1, 6))
    grad_f, grad_q = spixel_feature2.backward(f, q, init, 2, 3, g)
    np.testing.assert_allclose(grad_f[0, :, 0, 0], [1.0, 1.0], rtol=1e-12)  # Q / W = 1
    grad_f[0, :, 0, 0] = 0.0
    assert np.all(grad_f == 0)
    # dQ flows only into the pairs of the alive superpixel 0 (cells 0, 1, 3 see it).
    sees_zero = np.zeros((9, 4, 6), dtype=bool)
    for y, x, c in itertools.product(range(4), range(6), range(9)):
        sees_zero[c, y, x] = grid.neighbour_index(int(init[0, 0, y, x]), c, 2, 3) == 0
    assert np.all(grad_q[0][~sees_zero] == 0)
    assert np.any(grad_q[0][sees_zero] != 0)


def test_spixel_feature2_bad_cells():
    f = np.zeros((1, 1, 4, 6))
    q = np.ones((1, 9, 4, 6))
    _, _, init = spec15()
    init = init.copy()
    init[0, 0, 0, 0] = 6.0
    with pytest.raises(ValueError, match="out of range"):
        spixel_feature2.forward(f, q, init, 2, 3)
    with pytest.raises(ValueError):
        spixel_feature2.forward(f, np.ones((1, 8, 4, 6)), init, 2, 3)


# --------------------------------------------------------------------------------------------
# RelToAbsIndex (3.5)


def test_rel_to_abs_index_fallback_and_range():
    init = random_cells(n=1)
    for c in range(9):
        rel = np.full((1, 1, H, W), float(c))
        out = rel_to_abs_index.forward(rel, init, GRID_H, GRID_W)
        for y, x in itertools.product(range(H), range(W)):
            cell = int(init[0, 0, y, x])
            assert out[0, 0, y, x] == grid.neighbour_index_clamped(cell, c, GRID_H, GRID_W)
    rel = np.zeros((1, 1, H, W))
    rel[0, 0, 3, 3] = 9.0
    with pytest.raises(ValueError, match="out of range"):
        rel_to_abs_index.forward(rel, init, GRID_H, GRID_W)
    rel[0, 0, 3, 3] = -1.0
    with pytest.raises(ValueError, match="out of range"):
        rel_to_abs_index.forward(rel, init, GRID_H, GRID_W)


# --------------------------------------------------------------------------------------------
# Smear (3.6)


def test_smear_forward_backward():
    rng = np.random.default_rng(9)
    values = rng.standard_normal((N, C, 2, 3))  # h0 x w0 = 2 x 3, flat ids 0..5
    idx, mask = ignored_index_map(rng, ignore=-1.0)
    top = smear.forward(values, idx, ignore_idx_value=-1.0, ignore_feature_value=42.0)
    flat = values.reshape(N, C, 6)
    for n, y, x in itertools.product(range(N), range(H), range(W)):
        if mask[n, 0, y, x]:
            assert np.all(top[n, :, y, x] == 42.0)
        else:
            np.testing.assert_array_equal(top[n, :, y, x], flat[n, :, int(idx[n, 0, y, x])])
    r = rng.standard_normal(top.shape)
    grad = smear.backward(values, idx, r, ignore_idx_value=-1.0)
    check_gradient(lambda v: np.sum(smear.forward(v, idx, -1.0, 42.0) * r), values, grad, rng)


def test_smear_index_out_of_range():
    values = np.zeros((1, 2, 1, 4))
    idx = np.zeros((1, 1, 2, 2))
    idx[0, 0, 0, 1] = 4.0
    with pytest.raises(ValueError, match="out of range"):
        smear.forward(values, idx)
    idx[0, 0, 0, 1] = -3.0
    with pytest.raises(ValueError, match="out of range"):
        smear.backward(values, idx, np.zeros((1, 2, 2, 2)))


# --------------------------------------------------------------------------------------------
# Interp (3.7)


def test_interp_zoom2_example():
    x = np.arange(9.0).reshape(1, 1, 3, 3)
    expected = [[0, .5, 1, 1.5, 2], [1.5, 2, 2.5, 3, 3.5], [3, 3.5, 4, 4.5, 5],
                [4.5, 5, 5.5, 6, 6.5], [6, 6.5, 7, 7.5, 8]]
    np.testing.assert_allclose(interp.forward(x, zoom_factor=2)[0, 0], expected, atol=1e-12)


def test_interp_output_shape_rules():
    assert interp.output_shape(201, 201, shrink_factor=2) == (101, 101)
    assert interp.output_shape(101, 101, zoom_factor=2) == (201, 201)
    assert interp.output_shape(51, 51, zoom_factor=4) == (201, 201)
    assert interp.output_shape(321, 481, shrink_factor=4) == (81, 121)
    assert interp.output_shape(200, 200, shrink_factor=2) == (100, 100)
    assert interp.output_shape(201, 201, shrink_factor=2, zoom_factor=2) == (201, 201)
    assert interp.output_shape(7, 9, height=4, width=5) == (4, 5)
    # A single factor wins over an explicit size (DeepLab's order, and the C++ layer's).
    assert interp.output_shape(7, 9, zoom_factor=2, height=4, width=5) == (13, 17)
    assert interp.output_shape(7, 9, shrink_factor=2, height=6, width=6) == (4, 5)
    assert interp.output_shape(7, 9, zoom_factor=2, height=4) == (13, 17)
    assert interp.output_shape(7, 9, zoom_factor=2, pad_beg=-1, pad_end=-1) == (9, 13)
    with pytest.raises(ValueError):
        interp.output_shape(7, 9)
    with pytest.raises(ValueError):
        interp.output_shape(7, 9, zoom_factor=2, pad_beg=1)
    with pytest.raises(ValueError):
        interp.output_shape(7, 9, zoom_factor=0)
    with pytest.raises(ValueError):
        interp.output_shape(7, 9, height=0, width=3)


def test_interp_matches_float64_bilinear():
    """Float32 ratios change the weights by at most ~1e-6 relative to exact align-corners."""
    rng = np.random.default_rng(10)
    x = rng.standard_normal((1, 2, 7, 9))
    y = interp.forward(x, height=11, width=4)
    rows = np.arange(11) * 6 / 10
    cols = np.arange(4) * 8 / 3
    exact = np.empty((1, 2, 11, 4))
    for i, r in enumerate(rows):
        for j, c in enumerate(cols):
            r0, c0 = min(int(r), 5), min(int(c), 7)
            lr, lc = r - r0, c - c0
            exact[0, :, i, j] = ((1 - lr) * ((1 - lc) * x[0, :, r0, c0] + lc * x[0, :, r0, c0 + 1])
                                 + lr * ((1 - lc) * x[0, :, r0 + 1, c0]
                                         + lc * x[0, :, r0 + 1, c0 + 1]))
    np.testing.assert_allclose(y, exact, atol=1e-5)
    np.testing.assert_array_equal(interp.forward(x, height=7, width=9), x)


@pytest.mark.slow
@pytest.mark.parametrize("kwargs", [
    dict(zoom_factor=2),
    dict(shrink_factor=2),
    dict(shrink_factor=2, zoom_factor=3),
    dict(height=5, width=12),
    dict(height=1, width=4),
    dict(zoom_factor=2, pad_beg=-1, pad_end=-2),
    dict(height=5, width=7, pad_beg=-1, pad_end=-1),  # equal sizes: a cropped copy
])
def test_interp_backward(kwargs):
    rng = np.random.default_rng(11)
    x = rng.standard_normal((N, C, H, W))
    top = interp.forward(x, **kwargs)
    assert top.shape[2:] == interp.output_shape(H, W, **kwargs)
    r = rng.standard_normal(top.shape)
    grad = interp.backward(x, r, **kwargs)
    check_gradient(lambda v: np.sum(interp.forward(v, **kwargs) * r), x, grad, rng)
    if kwargs.get("pad_beg", 0) < 0:
        assert np.all(grad[:, :, 0] == 0) and np.all(grad[:, :, :, 0] == 0)


# --------------------------------------------------------------------------------------------
# ConcatConvolution


def test_concat_convolution_by_hand():
    """A 1-channel and a 2-channel 2x2 image, a 2x2 kernel, no padding: one output pixel."""
    first = np.array([[[[1.0, 2.0], [3.0, 4.0]]]])
    second = np.stack([np.full((2, 2), 10.0), np.eye(2)])[None]
    weights = np.zeros((2, 3, 2, 2))
    weights[0, 0] = [[1, 0], [0, 1]]  # 1 + 4 from the first bottom
    weights[0, 2, 1, 0] = 7           # 7 * eye[1, 0] = 0
    weights[1, 1, 0, 1] = 0.5         # 0.5 * 10
    weights[1, 2, 1, 1] = 3           # 3 * eye[1, 1]
    top = concat_convolution.forward([first, second], weights, bias=[0.25, -1.0])
    np.testing.assert_allclose(top, [[[[5.25]], [[7.0]]]])


@pytest.mark.parametrize("pad, stride", [((1, 1), (1, 1)), ((0, 2), (2, 1))])
def test_concat_convolution_backward(pad, stride):
    rng = np.random.default_rng(12)
    bottoms = [rng.standard_normal((N, c, H, W)) for c in (2, 1, 3)]
    weights = rng.standard_normal((4, 6, 3, 3))
    bias = rng.standard_normal(4)
    top = concat_convolution.forward(bottoms, weights, bias, pad, stride)
    assert top.shape == (N, 4, (H + 2 * pad[0] - 3) // stride[0] + 1,
                         (W + 2 * pad[1] - 3) // stride[1] + 1)
    r = rng.standard_normal(top.shape)
    d_bottoms, d_weights, d_bias = concat_convolution.backward(bottoms, weights, r, pad, stride)

    def loss(index, value):
        args = [list(bottoms), weights, bias]
        if index < len(bottoms):
            args[0][index] = value
        else:
            args[index - len(bottoms) + 1] = value
        return np.sum(concat_convolution.forward(*args, pad, stride) * r)

    for index, (value, grad) in enumerate(zip(bottoms + [weights, bias],
                                              d_bottoms + [d_weights, d_bias])):
        check_gradient(lambda v, i=index: loss(i, v), value, grad, rng)


def test_concat_convolution_equals_one_convolution_of_the_concatenation():
    rng = np.random.default_rng(13)
    bottoms = [rng.standard_normal((2, c, 5, 6)) for c in (3, 2)]
    weights = rng.standard_normal((2, 5, 3, 3))
    joined = np.concatenate(bottoms, axis=1)
    np.testing.assert_array_equal(concat_convolution.forward(bottoms, weights, pad=(1, 1)),
                                  concat_convolution.forward([joined], weights, pad=(1, 1)))
    with pytest.raises(ValueError, match="agree on every axis"):
        concat_convolution.forward([bottoms[0], bottoms[1][:, :, :4]], weights)
    with pytest.raises(ValueError, match="M x 5 x kh x kw"):
        concat_convolution.forward(bottoms, weights[:, :4])


# --------------------------------------------------------------------------------------------
# LossWithoutSoftmax (3.8)


def test_loss_by_hand_and_normalisations():
    # N = 2, L = 3, H = 1, W = 2.
    prob = np.array([[[[0.5, 0.1]], [[0.25, 0.2]], [[0.25, 0.7]]],
                     [[[0.1, 0.3]], [[0.8, 0.3]], [[0.1, 0.4]]]])
    labels = np.array([[[[0, 2]]], [[[1, 255]]]], dtype=float)
    nll = -(np.log(0.5) + np.log(0.7) + np.log(0.8))
    expected = {"VALID": nll / 3, "FULL": nll / 4, "BATCH_SIZE": nll / 2, "NONE": nll}
    for mode, value in expected.items():
        got = loss_without_softmax.forward(prob, labels, ignore_label=255, normalization=mode)
        assert got == pytest.approx(value, rel=1e-12)
        grad = loss_without_softmax.backward(prob, labels, top_diff=2.0, ignore_label=255,
                                             normalization=mode)
        z = nll / value
        want = np.zeros_like(prob)
        want[0, 0, 0, 0] = -2.0 / 0.5 / z
        want[0, 2, 0, 1] = -2.0 / 0.7 / z
        want[1, 1, 0, 0] = -2.0 / 0.8 / z
        np.testing.assert_allclose(grad, want, rtol=1e-12)
    # Without ignore_label, 255 is out of range.
    with pytest.raises(ValueError, match="out of range"):
        loss_without_softmax.forward(prob, labels)
    # Everything ignored: Z = max(1, 0) = 1 and the loss is 0.
    all_ignored = np.full_like(labels, 255)
    assert loss_without_softmax.forward(prob, all_ignored, ignore_label=255) == 0.0
    with pytest.raises(ValueError):
        loss_without_softmax.forward(prob, labels, ignore_label=255, normalization="MEAN")


def test_loss_clamp():
    prob = np.array([0.0, 1.0]).reshape(1, 2, 1, 1)
    labels = np.zeros((1, 1, 1, 1))
    flt_min = float(np.finfo(np.float32).tiny)
    assert loss_without_softmax.forward(prob, labels) == pytest.approx(-np.log(flt_min))
    grad = loss_without_softmax.backward(prob, labels)
    assert grad[0, 0, 0, 0] == pytest.approx(-1.0 / flt_min)


def test_loss_label_range():
    prob = np.full((1, 3, 2, 2), 0.5)
    for bad in (3.0, -1.0, -2.5):
        labels = np.zeros((1, 1, 2, 2))
        labels[0, 0, 1, 0] = bad
        with pytest.raises(ValueError, match="out of range"):
            loss_without_softmax.forward(prob, labels, ignore_label=255)
        with pytest.raises(ValueError, match="out of range"):
            loss_without_softmax.backward(prob, labels, ignore_label=255)
    with pytest.raises(ValueError):
        loss_without_softmax.forward(prob, np.zeros((1, 1, 2, 3)))


@pytest.mark.parametrize("normalization", loss_without_softmax.NORMALIZATIONS)
def test_loss_backward(normalization):
    rng = np.random.default_rng(12)
    prob = rng.uniform(0.2, 1.0, (N, 5, H, W))
    labels = rng.integers(0, 5, (N, 1, H, W)).astype(float)
    labels[rng.random(labels.shape) < 0.2] = 255.0
    kwargs = dict(ignore_label=255, normalization=normalization)
    grad = loss_without_softmax.backward(prob, labels, top_diff=1.5, **kwargs)
    check_gradient(lambda p: 1.5 * loss_without_softmax.forward(p, labels, **kwargs), prob,
                   grad, rng)


def test_loss_axis():
    """The class axis may be other than 1; labels then follow the remaining axes."""
    rng = np.random.default_rng(13)
    prob = rng.uniform(0.2, 1.0, (N, H, W, 4))
    labels = rng.integers(0, 4, (N, H, W)).astype(float)
    moved = np.moveaxis(prob, 3, 1)
    value = loss_without_softmax.forward(prob, labels, axis=3)
    assert value == pytest.approx(loss_without_softmax.forward(moved, labels[:, None]))
    grad = loss_without_softmax.backward(prob, labels, axis=3)
    np.testing.assert_allclose(
        np.moveaxis(grad, 3, 1), loss_without_softmax.backward(moved, labels[:, None]))


def test_normalised_loss_by_hand():
    """normalize: x = (1, 3, 0, -1), shift 0.5: s = (1.5, 3.5, 0.5, -0.5), D = 5.5 + 0.25."""
    x = np.array([1.0, 3.0, 0.0, -1.0]).reshape(1, 4, 1, 1)
    labels = np.ones((1, 1, 1, 1))
    kwargs = dict(normalize=True, shift=0.5, sum_shift=0.25)
    d = 5.75
    p_label = 3.5 / d
    assert loss_without_softmax.forward(x, labels, **kwargs) == pytest.approx(-np.log(p_label),
                                                                              rel=1e-12)
    grad = loss_without_softmax.backward(x, labels, top_diff=2.0, **kwargs)
    g = -2.0 / p_label
    want = g * (np.array([0.0, 1.0, 0.0, 0.0]) / d - np.array([1.0, 1.0, 1.0, 0.0]) * 3.5 / d**2)
    np.testing.assert_allclose(grad.reshape(-1), want, rtol=1e-12)
    assert grad.reshape(-1)[3] == 0.0  # s_3 < 0 is not in the sum


def test_normalised_loss_clamp():
    """p_label = 0 is clamped to FLT_MIN; the gradient is -1/FLT_MIN times dp/dx there."""
    x = np.array([0.0, 2.0]).reshape(1, 2, 1, 1)
    labels = np.zeros((1, 1, 1, 1))
    kwargs = dict(normalize=True, shift=0.0, sum_shift=1e-12)
    flt_min = loss_without_softmax.FLT_MIN
    assert loss_without_softmax.forward(x, labels, **kwargs) == pytest.approx(-np.log(flt_min))
    grad = loss_without_softmax.backward(x, labels, **kwargs).reshape(-1)
    assert grad[0] == pytest.approx(-1.0 / flt_min / (2.0 + 1e-12))
    assert grad[1] == 0.0  # dp/dx_1 = -s_label / D^2 = 0


@pytest.mark.slow
@pytest.mark.parametrize("classes", [1, 2, 5])
@pytest.mark.parametrize("normalization", loss_without_softmax.NORMALIZATIONS)
def test_normalised_loss_backward(normalization, classes):
    rng = np.random.default_rng(14)
    # Some values below -shift: outside the class sum, with no gradient through it. The
    # label's own value stays positive: p_label <= 0 is clamped, where the loss is flat
    # but the gradient, as the chain of layers gave it, is not.
    x = rng.uniform(-0.5, 1.0, (N, classes, H, W))
    labels = rng.integers(0, classes, (N, 1, H, W)).astype(float)
    np.put_along_axis(x, labels.astype(int), rng.uniform(0.05, 1.0, labels.shape), axis=1)
    labels[rng.random(labels.shape) < 0.2] = 255.0
    kwargs = dict(ignore_label=255, normalization=normalization, normalize=True)
    grad = loss_without_softmax.backward(x, labels, top_diff=1.5, **kwargs)
    check_gradient(lambda v: 1.5 * loss_without_softmax.forward(v, labels, **kwargs), x,
                   grad, rng)
    ignored = np.broadcast_to(labels == 255, x.shape)
    assert np.all(grad[ignored] == 0)
