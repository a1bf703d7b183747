"""Caffe's CPU Convolution as patch 0009 runs it, against NumPy: the Winograd
F(4x4, 3x3) forward (caffe_layers/util/winograd_conv.*) and the forward it
replaces (shifted products or inputs, or im2col) on odd sizes; which one a layer
takes; and deep-mode labels with and without Winograd. ``SSN_CONV_WINOGRAD``
switches it: 0 off, 1 on for every 3x3 convolution, unset where it pays. Likewise
the backward: both gradients by Winograd (the input's as the convolution of the
output gradient with the rotated kernel) and by the path before it, switched by
``SSN_CONV_WINOGRAD_BACKWARD``. The C++ tests
(caffe_layers/util/test_shifted_conv.cpp) check both tile sizes against direct
sums, and the gradients."""
import numpy as np
import pytest

from ssn import inference
from ssn.nets.checked import single_layer_net

SWITCH = "SSN_CONV_WINOGRAD"
# Rounding, as a fraction of sum |w x| over an output's terms: F(4x4, 3x3)'s
# transforms scale by up to 8 and 1/24, and its float outputs came within about
# 4e-6 of that in these tests; the direct sums within about 3e-7.
WINOGRAD_TOLERANCE = 2e-5
DIRECT_TOLERANCE = 2e-6


def direct_convolution(x: np.ndarray, w: np.ndarray, pad: int) -> np.ndarray:
    """Caffe's convolution (correlation) of x (N, C, H, W) with w (M, C, 3, 3), zero
    padding ``pad`` on every side, stride 1, no bias; float64, (N, M, Ho, Wo)."""
    n, _, h, width = x.shape
    padded = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    out_h, out_w = h + 2 * pad - 2, width + 2 * pad - 2
    out = np.zeros((n, w.shape[0], out_h, out_w))
    for a in range(3):
        for b in range(3):
            window = padded[:, :, a:a + out_h, b:b + out_w]
            out += np.einsum("mc,nchw->nmhw", w[:, :, a, b].astype(np.float64), window,
                             optimize=True)
    return out


def convolve(shape, out_channels: int, pad: int, rng, settings, monkeypatch):
    """One Convolution layer (3x3, random weights and bias) on a random input of
    ``shape``, run once per value of SSN_CONV_WINOGRAD in ``settings`` (None: unset).
    Returns (x, w, bias, {setting: output})."""
    net = single_layer_net("Convolution", [shape], num_output=out_channels, kernel_size=3,
                           pad=pad)
    w = rng.normal(size=(out_channels, shape[1], 3, 3)).astype(np.float32)
    bias = rng.normal(size=out_channels).astype(np.float32)
    net.net.params["top0"][0].data[...] = w
    net.net.params["top0"][1].data[...] = bias
    x = rng.normal(size=shape).astype(np.float32)
    outputs = {}
    for setting in settings:
        if setting is None:
            monkeypatch.delenv(SWITCH, raising=False)
        else:
            monkeypatch.setenv(SWITCH, setting)
        outputs[setting] = net.forward(bottom0=x)["top0"]
    return x, w, bias, outputs


# N, C, M, H, W, pad: one-row and one-column images, images smaller than a tile,
# partial tiles at both edges, channel counts off the vector width, M padded for
# the products (13, 15), the feature CNN's first, middle and last convolutions.
GEOMETRIES = [
    (2, 13, 16, 1, 9, 1), (2, 13, 16, 9, 1, 1), (2, 16, 13, 2, 3, 1), (2, 16, 16, 5, 7, 0),
    (2, 13, 13, 5, 7, 1), (2, 64, 64, 17, 19, 1), (2, 64, 64, 17, 19, 0),
    (2, 197, 15, 17, 19, 1), (2, 5, 64, 17, 19, 1), (1, 64, 64, 321, 481, 1),
    (1, 197, 15, 321, 481, 1),
]


@pytest.mark.slow
@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: "x".join(map(str, g)))
def test_winograd_and_the_forward_it_replaces_match_numpy(geometry, monkeypatch):
    n, channels, out_channels, h, w, pad = geometry
    rng = np.random.default_rng(12)
    x, weights, bias, outputs = convolve((n, channels, h, w), out_channels, pad, rng,
                                         ["1", "0"], monkeypatch)
    expected = direct_convolution(x, weights, pad) + bias[None, :, None, None]
    magnitude = direct_convolution(np.abs(x), np.abs(weights), pad)
    for setting, tolerance in (("1", WINOGRAD_TOLERANCE), ("0", DIRECT_TOLERANCE)):
        error = np.abs(outputs[setting] - expected)
        assert error.shape == expected.shape
        assert np.all(error <= tolerance * magnitude + 1e-6), (setting, np.max(error / magnitude))
    # Evidence that the switch changes the arithmetic (Winograd rounds differently).
    assert not np.array_equal(outputs["1"], outputs["0"])


# N, C, M, H, W (pad 1).
@pytest.mark.slow
@pytest.mark.parametrize("geometry, winograd", [
    ((1, 64, 64, 321, 481), True),    # Convolution2
    ((1, 197, 15, 321, 481), True),   # Convolution7
    ((1, 64, 64, 81, 121), True),     # Convolution5 and 6
    ((1, 13, 16, 40, 40), True),      # few channels: the backward keeps im2col
    ((1, 5, 64, 321, 481), False),    # Convolution1: im2col
    ((2, 64, 64, 20, 30), False),     # too few pixels
    ((1, 64, 2, 100, 100), False),    # too few outputs
], ids=lambda value: "x".join(map(str, value)) if isinstance(value, tuple) else str(value))
def test_layers_take_winograd_where_it_pays(geometry, winograd, monkeypatch):
    """Unset, SSN_CONV_WINOGRAD gives bit for bit the output of 1 where Winograd pays
    (see ShiftedConv::kMinWinogradChannels) and of 0 elsewhere."""
    n, channels, out_channels, h, w = geometry
    _, _, _, outputs = convolve((n, channels, h, w), out_channels, 1, np.random.default_rng(5),
                                [None, "1", "0"], monkeypatch)
    assert not np.array_equal(outputs["1"], outputs["0"])
    assert np.array_equal(outputs[None], outputs["1" if winograd else "0"])


@pytest.mark.slow
def test_deep_labels_agree_with_and_without_winograd(bsds_root, monkeypatch):
    """The labels of deep mode on BSDS val images, with the CNN's forward by Winograd
    and without: over 99.9% of the pixels agree (float ties: 2 of 2.3 million
    differed over five images and three counts)."""
    from ssn.bsds import load_bsds, read_split
    for image_id in read_split("val", bsds_root)[:3]:
        rgb = load_bsds(image_id, "val", bsds_root).rgb
        labels = {}
        for setting in ("0", "1"):
            monkeypatch.setenv(SWITCH, setting)
            labels[setting] = inference.superpixels(rgb, 400, features="deep")
        assert labels["1"].max() > 200
        assert np.mean(labels["1"] == labels["0"]) > 0.999, image_id
    inference.deploy_net_for.cache_clear()  # a deep net at this size holds over a GB


def test_convolution_backward_is_unchanged_by_winograd(monkeypatch):
    """SSN_CONV_WINOGRAD switches the forward only: the gradients of a layer it
    applies to are the same bit for bit with it on and off (the backward does not
    read the top; SSN_CONV_WINOGRAD_BACKWARD is the backward's switch)."""
    rng = np.random.default_rng(8)
    net = single_layer_net("Convolution", [(1, 16, 40, 40)], num_output=16, kernel_size=3,
                           pad=1, weight_filler=dict(type="gaussian", std=0.1))
    x = rng.normal(size=(1, 16, 40, 40))
    top_diff = rng.normal(size=(1, 16, 40, 40))
    gradients = {}
    for setting in ("0", "1"):
        monkeypatch.setenv(SWITCH, setting)
        net.forward(bottom0=x)
        net.net.params["top0"][0].diff[...] = 0
        diffs = net.backward({"top0": top_diff}, ["bottom0"])
        gradients[setting] = (diffs["bottom0"], net.net.params["top0"][0].diff.copy())
    for on, off in zip(gradients["1"], gradients["0"]):
        np.testing.assert_array_equal(on, off)
    assert np.abs(gradients["1"][0]).max() > 0


BACKWARD_SWITCH = "SSN_CONV_WINOGRAD_BACKWARD"


def direct_gradients(x: np.ndarray, w: np.ndarray, dy: np.ndarray, pad: int):
    """The input and weight gradients of ``direct_convolution`` given its output
    gradient dy (N, M, Ho, Wo), each with the sum of its terms' magnitudes; float64:
    (dx, |dx| terms, dw, |dw| terms)."""
    n, c, h, width = x.shape
    out_h, out_w = dy.shape[2:]
    x64, w64, dy64 = (a.astype(np.float64) for a in (x, w, dy))
    padded = np.pad(x64, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dx_padded, dx_scale = np.zeros_like(padded), np.zeros_like(padded)
    dw, dw_scale = np.zeros(w.shape), np.zeros(w.shape)
    for a in range(3):
        for b in range(3):
            window = (slice(None), slice(None), slice(a, a + out_h), slice(b, b + out_w))
            dx_padded[window] += np.einsum("mc,nmhw->nchw", w64[:, :, a, b], dy64, optimize=True)
            dx_scale[window] += np.einsum("mc,nmhw->nchw", np.abs(w64[:, :, a, b]),
                                          np.abs(dy64), optimize=True)
            dw[:, :, a, b] = np.einsum("nmhw,nchw->mc", dy64, padded[window], optimize=True)
            dw_scale[:, :, a, b] = np.einsum("nmhw,nchw->mc", np.abs(dy64),
                                             np.abs(padded[window]), optimize=True)
    inside = (slice(None), slice(None), slice(pad, pad + h), slice(pad, pad + width))
    return dx_padded[inside], dx_scale[inside], dw, dw_scale


def backward(shape, out_channels: int, pad: int, rng, settings, monkeypatch):
    """One Convolution layer (3x3, random weights) run forward once on a random input of
    ``shape``, then backward from a random output gradient once per value of
    SSN_CONV_WINOGRAD_BACKWARD in ``settings`` (None: unset). Returns (x, w, dy,
    {setting: (input gradient, weight gradient, bias gradient)})."""
    net = single_layer_net("Convolution", [shape], num_output=out_channels, kernel_size=3,
                           pad=pad)
    w = rng.normal(size=(out_channels, shape[1], 3, 3)).astype(np.float32)
    net.net.params["top0"][0].data[...] = w
    x = rng.normal(size=shape).astype(np.float32)
    out = net.forward(bottom0=x)["top0"]
    dy = rng.normal(size=out.shape).astype(np.float32)
    gradients = {}
    for setting in settings:
        if setting is None:
            monkeypatch.delenv(BACKWARD_SWITCH, raising=False)
        else:
            monkeypatch.setenv(BACKWARD_SWITCH, setting)
        for param in net.net.params["top0"]:
            param.diff[...] = 0
        dx = net.backward({"top0": dy}, ["bottom0"])["bottom0"]
        gradients[setting] = (dx, *(param.diff.copy() for param in net.net.params["top0"]))
    return x, w, dy, gradients


# N, C, M, H, W, pad: the feature CNN's first (3 or 5 to 64), middle and last
# convolutions at odd sizes, batch 1 and 3, channel counts around the thresholds
# (8 and 4; 13, 15 and 197 off the vector width), one-row and one-column images,
# partial tiles, padding 0 and 2, and padding 3, where the input gradient is no
# 'same' convolution (it keeps the shifted path; the weights' takes Winograd).
BACKWARD_GEOMETRIES = [
    (1, 3, 64, 23, 29, 1), (3, 5, 64, 17, 19, 1), (3, 64, 64, 17, 19, 1),
    (1, 64, 64, 37, 70, 1), (1, 197, 15, 17, 19, 1), (3, 8, 4, 9, 11, 1),
    (2, 13, 16, 1, 9, 1), (2, 16, 13, 9, 1, 1), (2, 16, 16, 5, 7, 0), (2, 13, 16, 6, 9, 2),
    (1, 16, 16, 6, 9, 3),
]


@pytest.mark.slow
@pytest.mark.parametrize("geometry", BACKWARD_GEOMETRIES, ids=lambda g: "x".join(map(str, g)))
def test_winograd_backward_and_the_backward_it_replaces_match_numpy(geometry, monkeypatch):
    """Both gradients by Winograd (SSN_CONV_WINOGRAD_BACKWARD=1) and by the path
    before it (=0: shifted products or inputs, or Caffe's im2col) against float64
    sums, within the rounding of their terms' magnitudes; the bias gradient is the
    same bit for bit."""
    n, channels, out_channels, h, w, pad = geometry
    rng = np.random.default_rng(21)
    x, weights, dy, gradients = backward((n, channels, h, w), out_channels, pad, rng,
                                         ["1", "0"], monkeypatch)
    dx, dx_scale, dw, dw_scale = direct_gradients(x, weights, dy, pad)
    for setting, tolerance in (("1", WINOGRAD_TOLERANCE), ("0", DIRECT_TOLERANCE)):
        got_dx, got_dw, got_bias = gradients[setting]
        assert np.all(np.abs(got_dx - dx) <= tolerance * dx_scale + 1e-6), setting
        assert np.all(np.abs(got_dw - dw) <= tolerance * dw_scale + 1e-5), setting
        np.testing.assert_array_equal(got_bias, gradients["0"][2])
    assert np.abs(dw).max() > 0 and np.abs(dx).max() > 0
    # Evidence that the switch changes the arithmetic of the weights' gradient.
    assert not np.array_equal(gradients["1"][1], gradients["0"][1])


# N, C, M, H, W (pad 1); whether the input and weight gradients go by Winograd unset.
@pytest.mark.parametrize("geometry, data, weights", [
    ((1, 64, 64, 101, 101), True, True),    # Convolution2 to 6
    ((1, 197, 15, 40, 40), False, False),   # Convolution7: narrowing by over 4
    ((1, 5, 64, 40, 40), True, False),      # Convolution1: the weights' from few channels
    ((1, 8, 16, 40, 40), True, True),
    ((2, 64, 64, 20, 30), False, False),    # too few pixels
], ids=lambda value: "x".join(map(str, value)) if isinstance(value, tuple) else str(value))
def test_backward_takes_winograd_where_it_pays(geometry, data, weights, monkeypatch):
    """Unset, SSN_CONV_WINOGRAD_BACKWARD gives bit for bit the gradients of 1 where
    Winograd pays (see ShiftedConv::ForLayer) and of 0 elsewhere."""
    n, channels, out_channels, h, w = geometry
    _, _, _, gradients = backward((n, channels, h, w), out_channels, 1,
                                  np.random.default_rng(6), [None, "1", "0"], monkeypatch)
    for index, winograd in ((0, data), (1, weights)):
        assert not np.array_equal(gradients["1"][index], gradients["0"][index])
        expected = gradients["1" if winograd else "0"][index]
        np.testing.assert_array_equal(gradients[None][index], expected)


def test_forward_is_unchanged_by_the_backward_switch(monkeypatch):
    """SSN_CONV_WINOGRAD_BACKWARD leaves the forward alone, and SSN_CONV_WINOGRAD the
    backward: each pass has its own switch."""
    rng = np.random.default_rng(9)
    net = single_layer_net("Convolution", [(1, 16, 40, 40)], num_output=16, kernel_size=3,
                           pad=1, weight_filler=dict(type="gaussian", std=0.1))
    x = rng.normal(size=(1, 16, 40, 40))
    outputs = {}
    for setting in ("0", "1"):
        monkeypatch.setenv(BACKWARD_SWITCH, setting)
        outputs[setting] = net.forward(bottom0=x)["top0"].copy()
    np.testing.assert_array_equal(outputs["0"], outputs["1"])
