"""Caffe's BatchNorm as patches 0010 and 0021 leave it, against a float64 NumPy oracle.

Patch 0021 keeps no copy of the normalised output when the layer is not in place: the
backward recomputes it from the intact bottom. These tests cover both placements, stored
and batch statistics, odd shapes (N = 1 and 3, C = 1, 3 and 64, non-square planes, and
one large enough for the parallel loops), a ReLU in place after the layer (which
overwrites its top, as in SSN's feature CNN), a gradient check through Caffe itself, the
memory the layer allocates, and the GPU path against the CPU one (marked ``gpu``).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import caffe
import numpy as np
import pytest
from caffe import layers as L

from ssn.nets.checked import CheckedNet

EPS = 1e-4
MOVING_FRACTION = 0.9
SHAPES = [(1, 1, 5, 7), (3, 3, 4, 9), (1, 64, 3, 5), (3, 64, 19, 23)]
SHAPE_IDS = ["1x1x5x7", "3x3x4x9", "1x64x3x5", "parallel_3x64x19x23"]
PLACEMENTS = pytest.mark.parametrize("in_place", [False, True], ids=["separate", "in_place"])
STATISTICS = pytest.mark.parametrize("global_stats", [False, True], ids=["batch", "stored"])


# The float64 oracle: statistics per channel over N, H and W.

def channel_mean(a: np.ndarray) -> np.ndarray:
    """(1, C, 1, 1) mean of a (N, C, H, W) array over all axes but the channels."""
    return a.mean(axis=(0, 2, 3), keepdims=True)


def reference_forward(x, stored=None):
    """BatchNorm's output y = (x - mean) / sqrt(var + EPS) and its deviation.

    x: (N, C, H, W). stored: None for the batch's statistics (biased variance),
    else (mean_sum (C,), variance_sum (C,), scale) as Caffe stores them, the
    statistics being the sums divided by scale. Returns y (N, C, H, W) and the
    deviation sqrt(var + EPS) (1, C, 1, 1).
    """
    if stored is None:
        mean, variance = channel_mean(x), x.var(axis=(0, 2, 3), keepdims=True)
    else:
        mean_sum, variance_sum, scale = stored
        mean = (mean_sum / scale)[None, :, None, None]
        variance = (variance_sum / scale)[None, :, None, None]
    deviation = np.sqrt(variance + EPS)
    return (x - mean) / deviation, deviation


def reference_backward(x, top_diff, stored=None):
    """d/dx of sum(top_diff * y) for y = reference_forward(x, stored)[0]: (N, C, H, W).

    Batch statistics: (dy - mean(dy) - mean(dy y) y) / deviation; stored statistics
    are constants, so dy / deviation.
    """
    y, deviation = reference_forward(x, stored)
    if stored is not None:
        return top_diff / deviation
    return (top_diff - channel_mean(top_diff) - channel_mean(top_diff * y) * y) / deviation


def central_differences(function, x, step):
    """Gradient of the scalar function(x) by central differences, one element at a time."""
    gradient = np.zeros_like(x)
    for index in np.ndindex(*x.shape):
        shifted = x.copy()
        shifted[index] += step
        up = function(shifted)
        shifted[index] -= 2 * step
        gradient[index] = (up - function(shifted)) / (2 * step)
    return gradient


@STATISTICS
def test_reference_backward_matches_central_differences(global_stats):
    rng = np.random.default_rng(11)
    x = rng.normal(size=(3, 2, 3, 4)) * 2 + 1
    stored = (rng.normal(size=2), rng.uniform(1, 4, 2), 2.5) if global_stats else None
    top_diff = rng.normal(size=x.shape)
    expected = central_differences(
        lambda a: np.sum(top_diff * reference_forward(a, stored)[0]), x, 1e-6)
    np.testing.assert_allclose(reference_backward(x, top_diff, stored), expected,
                               rtol=1e-6, atol=1e-8)


# Caffe's layer.

def batch_norm_net(shape, in_place: bool, global_stats: bool, relu_after: bool = False):
    """x -> Power (an identity, so that BatchNorm may run in place on its top) ->
    BatchNorm, in place on "pre" or into "y", optionally followed by a ReLU in place
    on BatchNorm's top. Returns the net and the name of the output blob."""
    n = caffe.NetSpec()
    n.x = L.Input(shape=dict(dim=list(shape)))
    n.pre = L.Power(n.x)
    n.y = L.BatchNorm(n.pre, batch_norm_param=dict(use_global_stats=global_stats, eps=EPS,
                                                   moving_average_fraction=MOVING_FRACTION),
                      in_place=in_place)
    if relu_after:
        n.relu = L.ReLU(n.y, in_place=True)
    net_param = n.to_proto()
    net_param.force_backward = True
    net = CheckedNet(net_param, caffe.TEST if global_stats else caffe.TRAIN)
    return net, "pre" if in_place else "y"


def random_case(rng, shape, global_stats):
    """Input (N, C, H, W) with a per-channel offset and scale, already rounded to
    float32, and stored statistics (or None)."""
    channels = shape[1]
    x = (rng.normal(size=shape) * rng.uniform(0.5, 3, (1, channels, 1, 1))
         + rng.normal(size=(1, channels, 1, 1)))
    stored = None
    if global_stats:
        stored = (rng.normal(size=channels), rng.uniform(1, 4, channels), 2.5)
    return x.astype(np.float32).astype(np.float64), stored


def run_layer(shape, in_place, global_stats, x, stored, top_diff, relu_after=False):
    """Caffe's output, x diff and parameter blobs after one forward and backward."""
    net, top = batch_norm_net(shape, in_place, global_stats, relu_after)
    if stored is not None:
        for blob, value in zip(net.net.params["y"], stored):
            blob.data[...] = value
    output = net.forward(x=x)[top]
    x_diff = net.backward({top: top_diff}, ["x"])["x"]
    return output, x_diff, [blob.data.copy() for blob in net.net.params["y"]]


def assert_close(got, expected, rtol=1e-4, atol=1e-5):
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(got, expected, rtol=rtol, atol=atol * scale)


@PLACEMENTS
@STATISTICS
@pytest.mark.parametrize("shape", SHAPES, ids=SHAPE_IDS)
def test_batch_norm_matches_the_reference(shape, global_stats, in_place):
    rng = np.random.default_rng(5)
    x, stored = random_case(rng, shape, global_stats)
    top_diff = rng.normal(size=shape)
    output, x_diff, blobs = run_layer(shape, in_place, global_stats, x, stored, top_diff)
    assert_close(output, reference_forward(x, stored)[0])
    expected_diff = reference_backward(x, top_diff, stored)
    assert_close(x_diff, expected_diff)
    assert np.abs(x_diff).max() > 0.01
    if global_stats:
        return
    # One forward from zero sums: the sums are the statistics, the weight is 1.
    count = shape[0] * shape[2] * shape[3]
    correction = count / (count - 1) if count > 1 else 1
    np.testing.assert_allclose(blobs[0], channel_mean(x).ravel(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(blobs[1], x.var(axis=(0, 2, 3)) * correction,
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(blobs[2], [1])


@PLACEMENTS
@STATISTICS
@pytest.mark.parametrize("shape", [(3, 3, 4, 9), (3, 64, 19, 23)], ids=["small", "parallel"])
def test_a_relu_in_place_after_it_does_not_change_its_gradient(shape, global_stats,
                                                               in_place):
    """The ReLU overwrites BatchNorm's top; in place that is its bottom too, so
    the backward must take y from its cache, and otherwise from the bottom."""
    rng = np.random.default_rng(6)
    x, stored = random_case(rng, shape, global_stats)
    top_diff = rng.normal(size=shape)
    output, x_diff, _ = run_layer(shape, in_place, global_stats, x, stored, top_diff,
                                  relu_after=True)
    y = reference_forward(x, stored)[0]
    assert_close(output, np.maximum(y, 0))
    # The ReLU's mask from Caffe's own output: no float32 sign flip near zero.
    assert_close(x_diff, reference_backward(x, top_diff * (output > 0), stored))


@STATISTICS
@pytest.mark.parametrize("shape", [(1, 3, 5, 7), (3, 64, 19, 23)], ids=["small", "parallel"])
def test_separate_and_in_place_give_the_same_bits(shape, global_stats):
    """The recomputed normalised input is the cached one, bit for bit."""
    rng = np.random.default_rng(8)
    x, stored = random_case(rng, shape, global_stats)
    top_diff = rng.normal(size=shape)
    separate = run_layer(shape, False, global_stats, x, stored, top_diff, relu_after=True)
    in_place = run_layer(shape, True, global_stats, x, stored, top_diff, relu_after=True)
    for got, expected in zip(separate[:2], in_place[:2]):
        np.testing.assert_array_equal(got, expected)


@PLACEMENTS
@STATISTICS
def test_caffe_gradient_matches_differences_of_its_forward(global_stats, in_place):
    """Caffe's backward against central differences of Caffe's own forward (float32)."""
    rng = np.random.default_rng(9)
    shape = (2, 3, 3, 5)
    x, stored = random_case(rng, shape, global_stats)
    top_diff = rng.normal(size=shape)
    net, top = batch_norm_net(shape, in_place, global_stats)
    if stored is not None:
        for blob, value in zip(net.net.params["y"], stored):
            blob.data[...] = value
    net.forward(x=x)
    x_diff = net.backward({top: top_diff}, ["x"])["x"]
    expected = central_differences(
        lambda a: float(np.sum(top_diff * net.forward(x=a)[top], dtype=np.float64)), x, 1e-2)
    assert_close(x_diff, expected, rtol=5e-3, atol=2e-3)


# Memory: a fresh process, blobs above glibc's largest mmap threshold (32 MiB), so
# each new buffer shows as resident memory and freed ones leave it.
MEMORY_PROBE = textwrap.dedent("""
    import json, sys
    import caffe
    import numpy as np
    from caffe import layers as L

    def resident_mib():
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * 4096 / 2**20

    in_place, global_stats = sys.argv[1] == "in_place", sys.argv[2] == "stored"
    shape = [2, 32, 384, 384]
    n = caffe.NetSpec()
    n.x = L.Input(shape=dict(dim=shape))
    n.pre = L.Power(n.x)
    n.y = L.BatchNorm(n.pre, batch_norm_param=dict(use_global_stats=global_stats),
                      in_place=in_place)
    net_param = n.to_proto()
    net_param.force_backward = True
    caffe.set_mode_cpu()
    with open(sys.argv[3], "w") as f:
        f.write(str(net_param))
    net = caffe.Net(sys.argv[3], caffe.TRAIN)
    top = "pre" if in_place else "y"
    net.blobs["x"].data[...] = np.random.default_rng(0).normal(size=shape)
    net._forward(0, 1)  # Input, Power
    net.blobs[top].diff[...] = 1  # the top diff, allocated before the measurements
    before = resident_mib()
    net._forward(2, 2)
    after_forward = resident_mib()
    net._backward(2, 2)
    after_backward = resident_mib()
    blob = net.blobs["x"].data.nbytes / 2**20
    print(json.dumps(dict(forward=(after_forward - before) / blob,
                          backward=(after_backward - after_forward) / blob)))
""")


def batch_norm_allocations(tmp_path, in_place: bool, global_stats: bool) -> dict:
    """Resident memory that BatchNorm's first forward and backward add, in blobs of
    its input's size (2 x 32 x 384 x 384 floats, 36 MiB)."""
    result = subprocess.run(
        [sys.executable, "-c", MEMORY_PROBE, "in_place" if in_place else "separate",
         "stored" if global_stats else "batch", str(tmp_path / "net.prototxt")],
        capture_output=True, text=True, timeout=300,
        env=dict(os.environ, GLOG_minloglevel="2"))
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.mark.slow
@pytest.mark.parametrize("in_place, global_stats, forward_blobs", [
    (False, False, 1),  # top only: no cache of the normalised input
    (False, True, 1),   # top only
    (True, False, 1),   # the cache only (top is the bottom): the measurement sees it
    (True, True, 0),    # nothing
], ids=["separate_batch", "separate_stored", "in_place_batch", "in_place_stored"])
def test_batch_norm_caches_the_normalised_input_only_in_place(tmp_path, in_place,
                                                               global_stats, forward_blobs):
    grown = batch_norm_allocations(tmp_path, in_place, global_stats)
    assert grown["forward"] == pytest.approx(forward_blobs, abs=0.25), grown
    # The backward adds the bottom diff when it is not the top's, and nothing else.
    assert grown["backward"] == pytest.approx(0 if in_place else 1, abs=0.25), grown


@pytest.mark.slow
@pytest.mark.gpu
@PLACEMENTS
@STATISTICS
@pytest.mark.parametrize("shape", [(1, 1, 5, 7), (3, 3, 4, 9), (3, 64, 19, 23)],
                         ids=["1x1x5x7", "3x3x4x9", "3x64x19x23"])
def test_gpu_matches_the_cpu_and_the_reference(shape, global_stats, in_place):
    """The CUDA path (skips without a GPU build and device, as tests/test_gpu.py),
    with a ReLU in place after the layer: outputs, x diff and the moving averages."""
    from tests import test_gpu as gpu

    reason = gpu.gpu_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    caffe.set_device(gpu.DEVICE)
    rng = np.random.default_rng(10)
    x, stored = random_case(rng, shape, global_stats)
    top_diff = rng.normal(size=shape)
    try:
        cpu = run_layer(shape, in_place, global_stats, x, stored, top_diff, relu_after=True)
        caffe.set_mode_gpu()
        results = run_layer(shape, in_place, global_stats, x, stored, top_diff,
                            relu_after=True)
        other = run_layer(shape, not in_place, global_stats, x, stored, top_diff,
                          relu_after=True)
    finally:
        caffe.set_mode_cpu()
    output, x_diff, blobs = results
    assert_close(output, cpu[0], rtol=1e-5)
    assert_close(x_diff, cpu[1], rtol=1e-5)
    for got, expected in zip(blobs, cpu[2]):
        assert_close(got, expected, rtol=1e-5)
    y = reference_forward(x, stored)[0]
    assert_close(output, np.maximum(y, 0))
    assert_close(x_diff, reference_backward(x, top_diff * (output > 0), stored))
    for got, expected in zip(results[:2], other[:2]):  # recomputed y == cached y
        np.testing.assert_array_equal(got, expected)
