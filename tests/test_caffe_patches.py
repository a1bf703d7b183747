"""Caffe's own CPU layers that patches/caffe/0007-0017 fix or rewrite, against NumPy:
Crop, Softmax, BatchNorm, max pooling, ReLU and Eltwise products, forward and
backward. Shapes are large enough that the parallel paths run too. (ShiftedConv,
patch 0009's convolutions, has C++ tests: caffe_layers/util/test_shifted_conv.cpp.)"""
import caffe
import numpy as np
import pytest
from caffe import layers as L
from caffe import params as P

from ssn.nets.checked import CheckedNet

EPS = 1e-5
MOVING_FRACTION = 0.9


def batch_norm_net(shape, in_place: bool, global_stats: bool = True) -> CheckedNet:
    n = caffe.NetSpec()
    n.x = L.Input(shape=dict(dim=list(shape)))
    n.pre = L.Power(n.x)  # an identity, so that BatchNorm may work in place
    n.y = L.BatchNorm(n.pre, batch_norm_param=dict(use_global_stats=global_stats, eps=EPS,
                                                   moving_average_fraction=MOVING_FRACTION),
                      in_place=in_place)
    net_param = n.to_proto()
    net_param.force_backward = True
    return CheckedNet(net_param, caffe.TEST if global_stats else caffe.TRAIN)


@pytest.mark.parametrize("in_place", [False, True], ids=["separate", "in_place"])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 64, 40, 50)], ids=["small", "parallel"])
def test_batch_norm_with_stored_statistics_matches_numpy(shape, in_place):
    rng = np.random.default_rng(3)
    channels = shape[1]
    net = batch_norm_net(shape, in_place)
    mean_sum, variance_sum, scale = rng.normal(size=channels), rng.uniform(1, 4, channels), 2.5
    blobs = net.net.params["y"]
    blobs[0].data[...] = mean_sum
    blobs[1].data[...] = variance_sum
    blobs[2].data[...] = scale
    x = rng.normal(size=shape)
    mean = (mean_sum / scale)[None, :, None, None]
    deviation = np.sqrt(variance_sum / scale + EPS)[None, :, None, None]
    top = "pre" if in_place else "y"
    got = net.forward(x=x)[top]
    np.testing.assert_allclose(got, (x - mean) / deviation, rtol=1e-5, atol=1e-6)
    top_diff = rng.normal(size=shape)
    diffs = net.backward({top: top_diff}, ["x"])
    np.testing.assert_allclose(diffs["x"], top_diff / deviation, rtol=1e-5, atol=1e-6)


def normalise_by_batch(x):
    """(x - mean) / sqrt(var + eps) with the mean and (biased) variance of each
    channel over the batch and pixels; x: (N, C, H, W) float64."""
    mean = x.mean(axis=(0, 2, 3), keepdims=True)
    return (x - mean) / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + EPS)


def numerical_input_gradient(x, top_diff, step=1e-6):
    """d/dx of sum(top_diff * normalise_by_batch(x)) by central differences."""
    gradient = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        shifted = x.copy()
        shifted[index] += step
        up = np.sum(top_diff * normalise_by_batch(shifted))
        shifted[index] -= 2 * step
        down = np.sum(top_diff * normalise_by_batch(shifted))
        gradient[index] = (up - down) / (2 * step)
    return gradient


@pytest.mark.parametrize("in_place", [False, True], ids=["separate", "in_place"])
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (2, 64, 30, 40)], ids=["small", "parallel"])
def test_batch_norm_with_batch_statistics_matches_numpy(shape, in_place):
    rng = np.random.default_rng(7)
    net = batch_norm_net(shape, in_place, global_stats=False)
    top = "pre" if in_place else "y"
    x = rng.normal(size=shape) * 3 + rng.normal(size=(1, shape[1], 1, 1))
    expected = normalise_by_batch(x.astype(np.float32).astype(np.float64))
    np.testing.assert_allclose(net.forward(x=x)[top], expected, rtol=1e-4, atol=1e-5)
    # The moving averages: sums weighted by MOVING_FRACTION, and their weight.
    x2 = rng.normal(size=shape)
    net.forward(x=x2)
    count = shape[0] * shape[2] * shape[3]
    blobs = [blob.data.copy() for blob in net.net.params["y"]]
    np.testing.assert_allclose(blobs[2], [MOVING_FRACTION + 1], rtol=1e-6)
    for blob, statistic in ((blobs[0], np.mean), (blobs[1], np.var)):
        expected_sum = statistic(x2, axis=(0, 2, 3)) + MOVING_FRACTION * statistic(
            x, axis=(0, 2, 3))
        if statistic is np.var:
            expected_sum *= count / (count - 1)
        np.testing.assert_allclose(blob, expected_sum, rtol=1e-4)
    top_diff = rng.normal(size=shape)
    got = net.backward({top: top_diff}, ["x"])["x"]
    x2 = x2.astype(np.float32).astype(np.float64)
    if shape[1] <= 3:  # central differences of the NumPy forward
        expected_diff = numerical_input_gradient(x2, top_diff)
    else:  # the closed form, checked against differences on the small shape
        y = normalise_by_batch(x2)
        deviation = np.sqrt(x2.var(axis=(0, 2, 3), keepdims=True) + EPS)
        expected_diff = (top_diff - top_diff.mean(axis=(0, 2, 3), keepdims=True)
                         - (top_diff * y).mean(axis=(0, 2, 3), keepdims=True) * y) / deviation
    np.testing.assert_allclose(got, expected_diff, rtol=1e-3, atol=1e-4)
    assert np.abs(got).max() > 0.01


def max_pool_reference(x, kernel, stride, pad):
    """Max over each window (clipped to the image) and the flat index of its
    first maximum in row-major order, as Caffe defines them.

    x: (N, C, H, W). Returns (N, C, Ho, Wo) maxima and int indices into H*W.
    """
    n, c, h, w = x.shape
    out_h = -(-(h + 2 * pad - kernel) // stride) + 1
    out_w = -(-(w + 2 * pad - kernel) // stride) + 1
    maxima = np.empty((n, c, out_h, out_w))
    argmax = np.empty((n, c, out_h, out_w), dtype=int)
    for oy in range(out_h):
        for ox in range(out_w):
            y0, x0 = oy * stride - pad, ox * stride - pad
            y1, x1 = min(y0 + kernel, h), min(x0 + kernel, w)
            y0, x0 = max(y0, 0), max(x0, 0)
            window = x[:, :, y0:y1, x0:x1].reshape(n, c, -1)
            first = window.argmax(axis=2)
            maxima[:, :, oy, ox] = window.max(axis=2)
            argmax[:, :, oy, ox] = (y0 + first // (x1 - x0)) * w + x0 + first % (x1 - x0)
    return maxima, argmax


@pytest.mark.parametrize("shape, kernel, stride, pad", [
    ((2, 3, 9, 11), 3, 2, 1),
    ((1, 2, 8, 8), 2, 2, 0),
    ((1, 64, 41, 37), 3, 2, 1),
    ((2, 1, 7, 10), 3, 1, 0),
], ids=["ssn", "2x2", "parallel", "stride1"])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_max_pooling_matches_numpy(shape, kernel, stride, pad, ties):
    rng = np.random.default_rng(4)
    n = caffe.NetSpec()
    n.x = L.Input(shape=dict(dim=list(shape)))
    n.y, n.mask = L.Pooling(n.x, pool=P.Pooling.MAX, kernel_size=kernel, stride=stride,
                            pad=pad, ntop=2)
    net_param = n.to_proto()
    net_param.force_backward = True
    net = CheckedNet(net_param)
    x = rng.integers(0, 3, size=shape) if ties else rng.normal(size=shape)
    out = net.forward(x=x)
    maxima, argmax = max_pool_reference(x.astype(np.float32), kernel, stride, pad)
    np.testing.assert_array_equal(out["y"], maxima)
    np.testing.assert_array_equal(out["mask"], argmax)
    # Each output's gradient lands on its window's first maximum.
    top_diff = rng.normal(size=maxima.shape)
    expected = np.zeros(shape[:2] + (shape[2] * shape[3],))
    batch, channel = np.indices(shape[:2])
    for oy, ox in np.ndindex(*maxima.shape[2:]):
        np.add.at(expected, (batch, channel, argmax[:, :, oy, ox]), top_diff[:, :, oy, ox])
    diffs = net.backward({"y": top_diff}, ["x"])
    np.testing.assert_allclose(diffs["x"], expected.reshape(shape), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("fill", [np.nan, -np.inf], ids=["nan", "minus_inf"])
def test_max_pooling_of_nan_or_minus_inf_windows_keeps_a_valid_index(fill):
    """A diverged net's NaN (or -inf) windows: the window's first element is taken, so
    the backward adds into the input, never before it (patch 0017; the sdist kept
    index -1 and wrote bottom_diff[-1], corrupting the heap)."""
    shape = (2, 3, 6, 6)
    x = np.random.default_rng(5).normal(size=shape).astype(np.float32)
    x[:, 1, :3, :3] = fill  # the first 3x3 window of channel 1: no finite value
    for ntop in (1, 2):
        n = caffe.NetSpec()
        n.x = L.Input(shape=dict(dim=list(shape)))
        tops = L.Pooling(n.x, pool=P.Pooling.MAX, kernel_size=3, stride=3, ntop=ntop)
        n.y = tops[0] if ntop == 2 else tops
        if ntop == 2:
            n.mask = tops[1]
        net_param = n.to_proto()
        net_param.force_backward = True
        net = CheckedNet(net_param)
        out = net.forward(x=x)
        first = out["y"][:, 1, 0, 0]
        assert np.isnan(first).all() if np.isnan(fill) else (first == -np.inf).all()
        if ntop == 2:
            assert (out["mask"] >= 0).all() and (out["mask"][:, 1, 0, 0] == 0).all()
        diffs = net.backward({"y": np.ones(out["y"].shape)}, ["x"])
        assert diffs["x"][:, 1, 0, 0].tolist() == [1.0, 1.0]
        assert diffs["x"].sum() == out["y"].size  # every output's gradient landed inside


@pytest.mark.parametrize("negative_slope", [0.0, 0.1])
def test_relu_matches_numpy(negative_slope):
    rng = np.random.default_rng(5)
    shape = (1, 8, 100, 90)  # above the parallel threshold
    n = caffe.NetSpec()
    n.x = L.Input(shape=dict(dim=list(shape)))
    n.y = L.ReLU(n.x, negative_slope=negative_slope)
    net_param = n.to_proto()
    net_param.force_backward = True
    net = CheckedNet(net_param)
    x = rng.normal(size=shape).astype(np.float32)
    got = net.forward(x=x)["y"]
    np.testing.assert_allclose(got, np.where(x > 0, x, negative_slope * x), rtol=1e-6)
    top_diff = rng.normal(size=shape)
    diffs = net.backward({"y": top_diff}, ["x"])
    np.testing.assert_allclose(diffs["x"], top_diff * np.where(x > 0, 1, negative_slope),
                               rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("big, small, axis, offset", [
    ((2, 8, 90, 101), (2, 8, 81, 97), 2, [4, 3]),
    ((2, 5, 60, 70), (2, 3, 60, 65), 1, [2, 0, 5]),
    ((3, 20, 30), (3, 12, 25), 1, [1, 4]),
], ids=["parallel_rows", "channels_too", "three_axes"])
def test_crop_matches_numpy(big, small, axis, offset):
    rng = np.random.default_rng(6)
    n = caffe.NetSpec()
    n.big = L.Input(shape=dict(dim=list(big)))
    n.small = L.Input(shape=dict(dim=list(small)))
    n.crop = L.Crop(n.big, n.small, crop_param=dict(axis=axis, offset=offset))
    net_param = n.to_proto()
    net_param.force_backward = True
    net = CheckedNet(net_param)
    window = tuple(slice(None) for _ in range(axis)) + tuple(
        slice(start, start + size) for start, size in zip(offset, small[axis:]))
    x = rng.normal(size=big)
    out = net.forward(big=x, small=np.zeros(small))
    np.testing.assert_array_equal(out["crop"], x[window].astype(np.float32))
    top_diff = rng.normal(size=small)
    expected = np.zeros(big)
    expected[window] = top_diff
    diffs = net.backward({"crop": top_diff}, ["big"])
    np.testing.assert_allclose(diffs["big"], expected, rtol=1e-6)


@pytest.mark.parametrize("factors", [2, 3])
@pytest.mark.parametrize("shape", [(2, 3, 4, 5), (2, 45, 40, 41)], ids=["small", "parallel"])
def test_eltwise_product_matches_numpy(shape, factors):
    rng = np.random.default_rng(8)
    n = caffe.NetSpec()
    names = [f"x{i}" for i in range(factors)]
    for name in names:
        n[name] = L.Input(shape=dict(dim=list(shape)))
    n.y = L.Eltwise(*[n[name] for name in names], operation=P.Eltwise.PROD)
    net_param = n.to_proto()
    net_param.force_backward = True
    net = CheckedNet(net_param)
    inputs = {name: rng.normal(size=shape).astype(np.float32) for name in names}
    product = np.prod(np.stack(list(inputs.values())), axis=0)
    np.testing.assert_allclose(net.forward(**inputs)["y"], product, rtol=1e-6)
    top_diff = rng.normal(size=shape).astype(np.float32)
    diffs = net.backward({"y": top_diff}, names)
    for name in names:
        others = np.prod(np.stack([inputs[o] for o in names if o != name]), axis=0)
        np.testing.assert_allclose(diffs[name], others * top_diff, rtol=1e-5, atol=1e-7)


def test_crop_copies_each_row_once_and_correctly():
    """Caffe's CPU Crop, which the build fixes (it repeated each row copy W times)."""
    rng = np.random.default_rng(5)
    n = caffe.NetSpec()
    n.big = L.Input(shape=dict(dim=[2, 3, 9, 11]))
    n.small = L.Input(shape=dict(dim=[2, 3, 5, 4]))
    n.crop = L.Crop(n.big, n.small, crop_param=dict(axis=2, offset=[3, 2]))
    net_param = n.to_proto()
    net_param.force_backward = True
    net = CheckedNet(net_param)
    big = rng.normal(size=(2, 3, 9, 11))
    out = net.forward(big=big, small=np.zeros((2, 3, 5, 4)))
    np.testing.assert_allclose(out["crop"], big[:, :, 3:8, 2:6], rtol=1e-6)
    top_diff = rng.normal(size=(2, 3, 5, 4))
    diffs = net.backward({"crop": top_diff}, ["big"])
    expected = np.zeros_like(big)
    expected[:, :, 3:8, 2:6] = top_diff
    np.testing.assert_allclose(diffs["big"], expected, rtol=1e-6)


def softmax(a: np.ndarray) -> np.ndarray:
    """Softmax over axis 1, in float64."""
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_fused_softmax_matches_numpy():
    """Caffe's CPU Softmax, which the build replaces by a fused pass per position."""
    rng = np.random.default_rng(6)
    for shape in [(2, 9, 7, 5), (3, 4), (1, 9, 300, 301)]:
        n = caffe.NetSpec()
        n.x = L.Input(shape=dict(dim=list(shape)))
        n.y = L.Softmax(n.x)
        net = CheckedNet(n.to_proto())
        x = rng.normal(size=shape) * 30
        got = net.forward(x=x)["y"]
        np.testing.assert_allclose(got, softmax(x.astype(np.float32).astype(np.float64)),
                                   rtol=2e-5, atol=1e-7)


@pytest.mark.parametrize("channels", [1, 3, 50])
def test_neighbour_gather_filler_fills_the_decoder_weights(channels):
    """Patch 0018: the filler gives the one-hot kernels that ssn.nets.weights computes, so
    a net of the original decoder chain is complete from its prototxt alone."""
    from ssn.nets.weights import neighbour_gather_weights
    n = caffe.NetSpec()
    n.x = L.Input(shape=dict(dim=[1, channels, 4, 5]))
    n.y = L.Convolution(n.x, num_output=9 * channels, kernel_size=3, pad=1, group=channels,
                        bias_term=False, weight_filler=dict(type="neighbour_gather"))
    net = CheckedNet(n.to_proto())
    np.testing.assert_array_equal(net.net.params["y"][0].data,
                                  neighbour_gather_weights(channels))
