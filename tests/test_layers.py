"""Each SSN layer through pycaffe on CPU against the float64 NumPy reference.

Random inputs, odd sizes, batch 2 and grids whose cells touch every border case;
forward outputs and the gradients of every differentiable bottom are compared.
"""
import caffe
import numpy as np
import pytest

from ssn.nets.checked import single_layer_net
from ssn.reference import (
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

# (N, C, H, W, K_h, K_w): odd sizes, batch 2, one-cell grid, single row / column
# grids, and a grid with one pixel per cell.
GEOMETRIES = [
    (1, 3, 7, 9, 2, 3),
    (2, 4, 8, 11, 3, 4),
    (2, 2, 5, 6, 1, 1),
    (1, 3, 6, 7, 1, 3),
    (1, 2, 7, 5, 3, 1),
    (2, 3, 4, 5, 4, 5),
]
GEOMETRY_IDS = ["1x3x7x9_2x3", "2x4x8x11_3x4", "2x2x5x6_1x1", "1x3x6x7_1x3",
                "1x2x7x5_3x1", "2x3x4x5_4x5"]



def cells_for(num, height, width, grid_h, grid_w):
    """N x 1 x H x W initial cell map (floor rule)."""
    cells = grid.init_cells(height, width, grid_h, grid_w).astype(np.float64)
    return np.broadcast_to(cells, (num, 1, height, width)).copy()


def run(net, inputs, top_diffs=None):
    """Forward ``inputs`` (bottom0..), then backward ``top_diffs``; return tops and diffs."""
    tops = net.forward(**{f"bottom{i}": value for i, value in enumerate(inputs)})
    if top_diffs is None:
        return tops, None
    diffs = net.backward({f"top{i}": diff for i, diff in enumerate(top_diffs)},
                         [f"bottom{i}" for i in range(len(inputs))])
    return tops, [diffs[f"bottom{i}"] for i in range(len(inputs))]


def assert_close(actual, expected, rtol=1e-4, atol=1e-4):
    """float32 Caffe against the float64 reference, scaled to the values' size."""
    expected = np.asarray(expected)
    scale = max(1.0, float(np.abs(expected).max()) if expected.size else 1.0)
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale)


def test_all_eight_layer_types_are_registered():
    registered = set(caffe.layer_type_list())
    assert {"PixelFeature", "SpixelFeature", "Passoc", "SpixelFeature2", "RelToAbsIndex",
            "Smear", "Interp", "LossWithoutSoftmax"} <= registered


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (2, 3, 97, 131)], ids=["small", "threaded"])
@pytest.mark.parametrize("mode", ["POSITION", "POSITION_AND_RGB", "RGB_AND_POSITION", "RGB"])
def test_pixel_feature(mode, shape):
    rng = np.random.default_rng(1)
    image = rng.normal(size=shape) * 50
    params = dict(type=getattr(caffe.params.PixelFeature, mode), pos_scale=0.3,
                  color_scale=0.26, offset_h=1.5, offset_w=-2)
    net = single_layer_net("PixelFeature", [image.shape], pixel_feature_param=params)
    expected = pixel_feature.forward(image, mode, 0.3, 0.26, 1.5, -2)
    top_diff = rng.normal(size=expected.shape)
    tops, diffs = run(net, [image], [top_diff])
    assert_close(tops["top0"], expected)
    assert_close(diffs[0], pixel_feature.backward(image, top_diff, mode, 0.26))


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["AVGXY", "AVGRGBXY", "AVGXYRGBXY", "AVGRGB",
                                  "AVGRGBXYRGBXY"])
@pytest.mark.parametrize("geometry", GEOMETRIES + [(2, 5, 97, 131, 7, 9)],
                         ids=GEOMETRY_IDS + ["2x5x97x131_7x9_threaded"])
def test_spixel_feature(geometry, mode):
    num, channels, height, width, grid_h, grid_w = geometry
    rng = np.random.default_rng(2)
    features = rng.normal(size=(num, channels, height, width))
    # Random ids with some ignored pixels and (usually) some empty superpixels.
    num_spixels = grid_h * grid_w + 1
    ids = rng.integers(0, num_spixels, size=(num, 1, height, width)).astype(np.float64)
    ids[rng.random(ids.shape) < 0.15] = -10
    scales = dict(xy_scale=0.5, rgb_scale=2.0, rgbxy_xy_scale=0.25, rgbxy_rgb_scale=3.0,
                  ignore_idx_value=-10.0, ignore_feature_value=255.0)
    net = single_layer_net(
        "SpixelFeature", [features.shape, ids.shape], ntop=2,
        spixel_feature_param=dict(type=getattr(caffe.params.SpixelFeature, mode),
                                  max_spixels=num_spixels, **scales))
    means, smeared = spixel_feature.forward(features, ids, num_spixels, mode, **scales)
    means_diff, smeared_diff = rng.normal(size=means.shape), rng.normal(size=smeared.shape)
    tops, diffs = run(net, [features, ids], [means_diff, smeared_diff])
    assert_close(tops["top0"], means)
    assert_close(tops["top1"], smeared)
    expected = spixel_feature.backward(features, ids, num_spixels, means_diff, smeared_diff,
                                       mode, **scales)
    assert_close(diffs[0], expected)
    if mode == "AVGXY":  # positions only: the features get no gradient
        assert not diffs[0].any()
    else:
        assert np.abs(diffs[0]).max() > 0


@pytest.mark.parametrize("invalid_distance", [1e30, 10000.0])
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=GEOMETRY_IDS)
def test_passoc(geometry, invalid_distance):
    num, channels, height, width, grid_h, grid_w = geometry
    rng = np.random.default_rng(3)
    features = rng.normal(size=(num, channels, height, width))
    spixels = rng.normal(size=(num, channels, 1, grid_h * grid_w))
    cells = cells_for(num, height, width, grid_h, grid_w)
    net = single_layer_net(
        "Passoc", [features.shape, spixels.shape, cells.shape],
        spixel_feature2_param=dict(num_spixels_h=grid_h, num_spixels_w=grid_w,
                                   scale_value=-1, invalid_distance=invalid_distance))
    expected = passoc.forward(features, spixels, cells, grid_h, grid_w, -1.0, invalid_distance)
    top_diff = rng.normal(size=expected.shape)
    tops, diffs = run(net, [features, spixels, cells], [top_diff])
    np.testing.assert_allclose(tops["top0"], expected, rtol=1e-5, atol=1e-4)
    d_features, d_spixels = passoc.backward(features, spixels, cells, grid_h, grid_w,
                                            top_diff, -1.0)
    assert_close(diffs[0], d_features)
    assert_close(diffs[1], d_spixels)
    assert np.abs(diffs[0]).max() > 0 and np.abs(diffs[1]).max() > 0


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=GEOMETRY_IDS)
def test_spixel_feature2(geometry):
    num, channels, height, width, grid_h, grid_w = geometry
    rng = np.random.default_rng(4)
    features = rng.normal(size=(num, channels, height, width))
    assoc = rng.uniform(0.05, 1.0, size=(num, 9, height, width))
    assoc[:, :, :2, :2] = 1e-5  # starves some top-left superpixels below the threshold
    cells = cells_for(num, height, width, grid_h, grid_w)
    net = single_layer_net(
        "SpixelFeature2", [features.shape, assoc.shape, cells.shape],
        spixel_feature2_param=dict(num_spixels_h=grid_h, num_spixels_w=grid_w))
    expected = spixel_feature2.forward(features, assoc, cells, grid_h, grid_w)
    top_diff = rng.normal(size=expected.shape)
    tops, diffs = run(net, [features, assoc, cells], [top_diff])
    assert_close(tops["top0"], expected)
    d_features, d_assoc = spixel_feature2.backward(features, assoc, cells, grid_h, grid_w,
                                                   top_diff)
    assert_close(diffs[0], d_features)
    assert_close(diffs[1], d_assoc)
    assert np.abs(diffs[0]).max() > 0 and np.abs(diffs[1]).max() > 0


def test_spixel_feature2_dead_superpixel_is_zero():
    features = np.ones((1, 2, 2, 2))
    assoc = np.zeros((1, 9, 2, 2))
    assoc[:, 4] = 1.0  # every pixel is fully associated with its own cell only
    assoc[:, 4, 0, 1] = 0.0005  # cell 1 of a 1x2 grid gets W = 0.0005 + 0.0005 < 0.001
    assoc[:, 4, 1, 1] = 0.0004
    cells = cells_for(1, 2, 2, 1, 2)
    net = single_layer_net("SpixelFeature2", [features.shape, assoc.shape, cells.shape],
                           spixel_feature2_param=dict(num_spixels_h=1, num_spixels_w=2))
    tops, diffs = run(net, [features, assoc, cells], [np.ones((1, 2, 1, 2))])
    np.testing.assert_allclose(tops["top0"][0, :, 0], [[1, 0], [1, 0]], atol=1e-6)
    assert np.all(diffs[1][0, 4, :, 1] == 0)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=GEOMETRY_IDS)
def test_rel_to_abs_index(geometry):
    num, _, height, width, grid_h, grid_w = geometry
    rng = np.random.default_rng(5)
    relative = rng.integers(0, 9, size=(num, 1, height, width)).astype(np.float64)
    cells = cells_for(num, height, width, grid_h, grid_w)
    net = single_layer_net("RelToAbsIndex", [relative.shape, cells.shape],
                           rel_to_abs_index_param=dict(num_spixels_h=grid_h,
                                                       num_spixels_w=grid_w))
    tops, _ = run(net, [relative, cells])
    expected = rel_to_abs_index.forward(relative, cells, grid_h, grid_w)
    np.testing.assert_array_equal(tops["top0"], expected)


@pytest.mark.parametrize("spixel_shape, channels", [((1, 6), 3), ((2, 3), 3), ((2, 3), 40)],
                         ids=["row", "grid", "parallel_planes"])
def test_smear(spixel_shape, channels):
    rng = np.random.default_rng(6)
    values = rng.normal(size=(2, channels) + spixel_shape)
    ids = rng.integers(0, 6, size=(2, 1, 5, 7)).astype(np.float64)
    ids[0, 0, 0, :3] = -1
    net = single_layer_net("Smear", [values.shape, ids.shape])
    expected = smear.forward(values, ids)
    top_diff = rng.normal(size=expected.shape)
    tops, diffs = run(net, [values, ids], [top_diff])
    assert_close(tops["top0"], expected)
    assert_close(diffs[0], smear.backward(values, ids, top_diff))
    assert np.abs(diffs[0]).max() > 0


@pytest.mark.parametrize("params", [
    dict(zoom_factor=2), dict(zoom_factor=4), dict(shrink_factor=2),
    dict(height=13, width=6), dict(zoom_factor=3, shrink_factor=2),
    dict(zoom_factor=2, pad_beg=-1, pad_end=-2), dict(zoom_factor=2, height=5, width=5),
    dict(shrink_factor=2, height=6, width=6),
], ids=["zoom2", "zoom4", "shrink2", "size", "shrink_zoom", "crop", "zoom_over_size",
        "shrink_over_size"])
def test_interp(params):
    rng = np.random.default_rng(7)
    x = rng.normal(size=(2, 3, 7, 9))
    net = single_layer_net("Interp", [x.shape], interp_param=params)
    expected = interp.forward(x, **params)
    top_diff = rng.normal(size=expected.shape)
    tops, diffs = run(net, [x], [top_diff])
    assert tops["top0"].shape == expected.shape
    assert_close(tops["top0"], expected)
    assert_close(diffs[0], interp.backward(x, top_diff, **params))


@pytest.mark.parametrize("normalization", ["FULL", "VALID", "BATCH_SIZE", "NONE"])
def test_loss_without_softmax(normalization):
    rng = np.random.default_rng(8)
    prob = rng.uniform(0.05, 1.0, size=(2, 5, 4, 3))
    labels = rng.integers(0, 5, size=(2, 1, 4, 3)).astype(np.float64)
    labels[0, 0, 0] = 255
    norm = getattr(caffe.params.Loss, normalization)
    net = single_layer_net("LossWithoutSoftmax", [prob.shape, labels.shape],
                           loss_param=dict(ignore_label=255, normalization=norm))
    expected = loss_without_softmax.forward(prob, labels, 255, normalization)
    tops, diffs = run(net, [prob, labels], [np.array(2.0)])
    np.testing.assert_allclose(float(tops["top0"]), expected, rtol=1e-5)
    d_prob = loss_without_softmax.backward(prob, labels, 2.0, 255, normalization)
    assert_close(diffs[0], d_prob)
    assert np.abs(diffs[0]).max() > 0


def relu_class_values(rng, shape):
    """ReLU'd class values (exact zeros included) and labels with some 255s, as float32."""
    values = np.maximum(rng.normal(0.2, 0.5, shape), 0).astype(np.float32)
    labels = rng.integers(0, shape[1], (shape[0], 1) + shape[2:]).astype(np.float32)
    labels[rng.random(labels.shape) < 0.15] = 255
    return values, labels


# (N, C, H, W): batches of 1 and 3, one and two classes, SSN's 50, non-square; the last
# is large enough for the threaded loops.
NORMALISED_SHAPES = [(1, 1, 5, 3), (3, 2, 4, 7), (1, 50, 9, 6), (3, 50, 67, 45)]


@pytest.mark.slow
@pytest.mark.parametrize("shape", NORMALISED_SHAPES, ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("normalization", ["VALID", "FULL"])
def test_loss_without_softmax_normalize(normalization, shape):
    rng = np.random.default_rng(sum(shape))
    values, labels = relu_class_values(rng, shape)
    norm = getattr(caffe.params.Loss, normalization)
    net = single_layer_net("LossWithoutSoftmax", [values.shape, labels.shape],
                           propagate_down=[True, False],
                           loss_param=dict(ignore_label=255, normalization=norm),
                           loss_without_softmax_param=dict(normalize=True))
    kwargs = dict(ignore_label=255, normalization=normalization, normalize=True,
                  shift=float(np.float32(1e-10)), sum_shift=float(np.float32(1e-12)))
    expected = loss_without_softmax.forward(values, labels, **kwargs)
    tops, diffs = run(net, [values, labels], [np.array(2.0)])
    np.testing.assert_allclose(float(tops["top0"]), expected, rtol=1e-5)
    grad = loss_without_softmax.backward(values, labels, 2.0, **kwargs)
    assert_close(diffs[0], grad)
    assert np.abs(diffs[0]).max() > 0
    ignored = np.broadcast_to(labels == 255, values.shape)
    assert np.all(diffs[0][ignored] == 0)


def test_loss_without_softmax_normalize_options():
    """Other shifts; a label whose value is below -shift (p < 0, clamped); all ignored."""
    rng = np.random.default_rng(15)
    values = rng.normal(0.1, 1.0, (2, 4, 3, 5)).astype(np.float32)
    labels = rng.integers(0, 4, (2, 1, 3, 5)).astype(np.float32)
    net = single_layer_net("LossWithoutSoftmax", [values.shape, labels.shape],
                           propagate_down=[True, False],
                           loss_without_softmax_param=dict(normalize=True, shift=0.25,
                                                           sum_shift=0.5))
    kwargs = dict(normalize=True, shift=0.25, sum_shift=0.5)
    tops, diffs = run(net, [values, labels], [np.array(1.0)])
    np.testing.assert_allclose(float(tops["top0"]),
                               loss_without_softmax.forward(values, labels, **kwargs), rtol=1e-5)
    assert_close(diffs[0], loss_without_softmax.backward(values, labels, **kwargs))
    labels[:] = 255
    net = single_layer_net("LossWithoutSoftmax", [values.shape, labels.shape],
                           propagate_down=[True, False], loss_param=dict(ignore_label=255),
                           loss_without_softmax_param=dict(normalize=True))
    tops, diffs = run(net, [values, labels], [np.array(1.0)])
    assert float(tops["top0"]) == 0 and np.all(diffs[0] == 0)
