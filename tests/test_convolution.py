"""Caffe's CPU Convolution as patch 0009 runs it, against NumPy: the Winograd
F(4x4, 3x3) forward (caffe_layers/util/winograd_conv.*) and the forward it
replaces (shifted products or inputs, or im2col) on odd sizes; which one a layer
takes; and deep-mode labels with and without Winograd. ``SSN_CONV_WINOGRAD``
switches it: 0 off, 1 on for every 3x3 convolution, unset where it pays. The C++
tests (caffe_layers/util/test_shifted_conv.cpp) check both tile sizes against
direct sums, and the gradients."""
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
    """Winograd is forward only: the gradients of a layer it applies to are the same
    bit for bit with it on and off (the backward does not read the top)."""
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
