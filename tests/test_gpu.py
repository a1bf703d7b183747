"""Each SSN layer's GPU forward and backward against its CPU one, through pycaffe: the
project's one CPU-vs-GPU suite (the C++ tests check each device on its own, against
hand-worked values and finite differences).

Marked ``gpu``: they need Caffe built with ``python -m ssn_build --gpu`` and a CUDA
device, and skip cleanly otherwise (``pytest -m gpu`` selects them,
``-m "not gpu"`` leaves them out). ``SSN_GPU_DEVICE`` picks the device (default 0).
Both runs use the same net and the same float32 inputs; results agree to float32
rounding (sums are taken in another order on the GPU).
"""
from __future__ import annotations

import functools
import os
import subprocess
import sys

import caffe
import numpy as np
import pytest

from ssn.nets.checked import single_layer_net
from ssn.reference import grid

pytestmark = pytest.mark.gpu

DEVICE = int(os.environ.get("SSN_GPU_DEVICE", "0"))
# cuDNN and cuBLAS may use TF32 (10-bit mantissas) for float on Ampere and newer; the
# comparisons with the CPU are made at full float precision. Read when CUDA starts.
os.environ.setdefault("NVIDIA_TF32_OVERRIDE", "0")
# (N, C, H, W, K_h, K_w): odd sizes, batch 2, several runs of equal cell per row.
NUM, CHANNELS, HEIGHT, WIDTH, GRID_H, GRID_W = 2, 5, 37, 53, 4, 6


@functools.lru_cache(maxsize=None)
def gpu_unavailable_reason() -> str | None:
    """Why this Caffe cannot run on GPU ``DEVICE``, or None when it can.

    Probed in a subprocess: a CPU_ONLY build, or a GPU build without a device,
    aborts the process on ``caffe.set_device``.
    """
    probe = (f"import caffe; caffe.set_device({DEVICE}); caffe.set_mode_gpu(); "
             "print(caffe.layer_type_list() is not None)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                            env=dict(os.environ, GLOG_minloglevel="3"), timeout=120)
    if result.returncode == 0:
        return None
    lines = result.stderr.strip().splitlines() or ["(no message)"]
    fatal = [line for line in lines if line.startswith("F") or "Check failed" in line]
    return f"caffe cannot use GPU {DEVICE}: {(fatal or lines)[0]}"


@pytest.fixture(autouse=True)
def restore_cpu_mode():
    """Skip without a usable GPU; leave Caffe in CPU mode for the other tests."""
    reason = gpu_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    caffe.set_device(DEVICE)
    try:
        yield
    finally:
        caffe.set_mode_cpu()


def cells(num=NUM, height=HEIGHT, width=WIDTH, grid_h=GRID_H, grid_w=GRID_W):
    """N x 1 x H x W initial cell map (floor rule)."""
    init = grid.init_cells(height, width, grid_h, grid_w).astype(np.float64)
    return np.broadcast_to(init, (num, 1, height, width)).copy()


def set_mode(mode):
    """Caffe's mode: "cpu" or "gpu"."""
    if mode == "gpu":
        caffe.set_mode_gpu()
    else:
        caffe.set_mode_cpu()


def forward_on_both(net, **inputs):
    """{"cpu": outputs, "gpu": outputs} of ``net.forward(**inputs)`` in each mode."""
    results = {}
    for mode in ("cpu", "gpu"):
        set_mode(mode)
        results[mode] = net.forward(**inputs)
    return results


def run_on(mode, net, inputs, top_diffs):
    """Forward ``inputs`` (bottom0..) and backward ``top_diffs`` in ``mode``."""
    set_mode(mode)
    tops = net.forward(**{f"bottom{i}": value for i, value in enumerate(inputs)})
    diffs = net.backward({f"top{i}": diff for i, diff in enumerate(top_diffs)},
                         [f"bottom{i}" for i in range(len(inputs))])
    return tops, diffs


def assert_gpu_matches_cpu(net, inputs, differentiable, seed=0, rtol=1e-4, atol=1e-4):
    """Runs ``net`` on CPU then GPU; compares every top and the diffs of ``differentiable``."""
    rng = np.random.default_rng(seed)
    net.forward(**{f"bottom{i}": value for i, value in enumerate(inputs)})
    shapes = [net.net.blobs[name].data.shape for name in net.net.outputs]
    top_diffs = [rng.normal(size=shape) for shape in shapes]
    cpu_tops, cpu_diffs = run_on("cpu", net, inputs, top_diffs)
    gpu_tops, gpu_diffs = run_on("gpu", net, inputs, top_diffs)
    for name, expected in cpu_tops.items():
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(gpu_tops[name], expected, rtol=rtol, atol=atol * scale,
                                   err_msg=f"top {name}")
    for index in differentiable:
        expected = cpu_diffs[f"bottom{index}"]
        assert np.abs(expected).max() > 0, f"bottom{index}: all-zero CPU gradient"
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(gpu_diffs[f"bottom{index}"], expected, rtol=rtol,
                                   atol=atol * scale, err_msg=f"diff of bottom{index}")


def grid_params(**extra):
    return dict(num_spixels_h=GRID_H, num_spixels_w=GRID_W, **extra)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["POSITION", "POSITION_AND_RGB", "RGB_AND_POSITION", "RGB"])
def test_pixel_feature(mode):
    image = np.random.default_rng(1).normal(size=(NUM, 3, HEIGHT, WIDTH)) * 50
    params = dict(type=getattr(caffe.params.PixelFeature, mode), pos_scale=0.3,
                  color_scale=0.26, offset_h=1.5, offset_w=-2)
    net = single_layer_net("PixelFeature", [image.shape], pixel_feature_param=params)
    assert_gpu_matches_cpu(net, [image], [0] if mode != "POSITION" else [])


@pytest.mark.parametrize("mode", ["AVGXY", "AVGRGBXY", "AVGRGB", "AVGRGBXYRGBXY"])
def test_spixel_feature_both_tops(mode):
    rng = np.random.default_rng(2)
    features = rng.normal(size=(NUM, CHANNELS, HEIGHT, WIDTH))
    ids = cells()
    ids.reshape(-1)[::7] = -10  # ignored pixels
    params = dict(type=getattr(caffe.params.SpixelFeature, mode),
                  max_spixels=GRID_H * GRID_W + 1, ignore_idx_value=-10,
                  ignore_feature_value=255, rgb_scale=0.5, xy_scale=0.25, rgbxy_rgb_scale=2)
    net = single_layer_net("SpixelFeature", [features.shape, ids.shape], ntop=2,
                           propagate_down=[True, False], spixel_feature_param=params)
    assert_gpu_matches_cpu(net, [features, ids], [0] if mode != "AVGXY" else [])


def test_passoc():
    rng = np.random.default_rng(3)
    features = rng.normal(size=(NUM, CHANNELS, HEIGHT, WIDTH))
    spixels = rng.normal(size=(NUM, CHANNELS, 1, GRID_H * GRID_W))
    init = cells()
    net = single_layer_net("Passoc", [features.shape, spixels.shape, init.shape],
                           propagate_down=[True, True, False],
                           spixel_feature2_param=grid_params(scale_value=-1,
                                                             invalid_distance=10000))
    assert_gpu_matches_cpu(net, [features, spixels, init], [0, 1])


def test_spixel_feature2_with_dead_superpixels():
    rng = np.random.default_rng(4)
    features = rng.normal(size=(NUM, CHANNELS, HEIGHT, WIDTH))
    assoc = rng.uniform(size=(NUM, 9, HEIGHT, WIDTH))
    assoc[0, :, :19] = 0  # grid row 0 of image 0 gets no weight: dead superpixels
    init = cells()
    net = single_layer_net("SpixelFeature2", [features.shape, assoc.shape, init.shape],
                           propagate_down=[True, True, False],
                           spixel_feature2_param=grid_params())
    assert_gpu_matches_cpu(net, [features, assoc, init], [0, 1])


def test_rel_to_abs_index():
    relative = np.random.default_rng(5).integers(0, 9, (NUM, 1, HEIGHT, WIDTH))
    init = cells()
    net = single_layer_net("RelToAbsIndex", [relative.shape, init.shape],
                           propagate_down=[False, False],
                           rel_to_abs_index_param=grid_params())
    assert_gpu_matches_cpu(net, [relative, init], [])


def test_smear_with_ignored():
    rng = np.random.default_rng(6)
    values = rng.normal(size=(NUM, CHANNELS, 1, GRID_H * GRID_W))
    ids = cells()
    ids.reshape(-1)[::5] = -1  # the default ignore_idx_value
    net = single_layer_net("Smear", [values.shape, ids.shape], propagate_down=[True, False])
    assert_gpu_matches_cpu(net, [values, ids], [0])


@pytest.mark.parametrize("params", [
    dict(zoom_factor=3), dict(shrink_factor=4),
    dict(height=20, width=81, pad_beg=-2, pad_end=-1), dict(shrink_factor=2, zoom_factor=3)],
    ids=["zoom", "shrink", "size_and_crop", "shrink_then_zoom"])
def test_interp(params):
    image = np.random.default_rng(7).normal(size=(NUM, CHANNELS, HEIGHT, WIDTH))
    net = single_layer_net("Interp", [image.shape], interp_param=params)
    assert_gpu_matches_cpu(net, [image], [0])


@pytest.mark.parametrize("normalization", ["FULL", "VALID", "BATCH_SIZE", "NONE"])
def test_loss_without_softmax(normalization):
    rng = np.random.default_rng(8)
    prob = rng.uniform(0.05, 1, (NUM, 6, HEIGHT, WIDTH))
    labels = rng.integers(0, 6, (NUM, 1, HEIGHT, WIDTH)).astype(np.float64)
    labels.reshape(-1)[::11] = 255
    net = single_layer_net("LossWithoutSoftmax", [prob.shape, labels.shape],
                           propagate_down=[True, False],
                           loss_param=dict(ignore_label=255, normalization=getattr(
                               caffe.params.Loss, normalization)))
    assert_gpu_matches_cpu(net, [prob, labels], [0])


@pytest.mark.parametrize("shape", [(1, 1, 5, 3), (3, 2, 4, 7), (3, 50, 67, 45)],
                         ids=lambda s: "x".join(map(str, s)))
@pytest.mark.parametrize("normalization", ["FULL", "VALID"])
def test_loss_without_softmax_normalize(normalization, shape):
    rng = np.random.default_rng(9)
    values = np.maximum(rng.normal(0.2, 0.5, shape), 0)  # ReLU'd, exact zeros included
    labels = rng.integers(0, shape[1], (shape[0], 1) + shape[2:]).astype(np.float64)
    labels.reshape(-1)[::7] = 255
    net = single_layer_net("LossWithoutSoftmax", [values.shape, labels.shape],
                           propagate_down=[True, False],
                           loss_param=dict(ignore_label=255, normalization=getattr(
                               caffe.params.Loss, normalization)),
                           loss_without_softmax_param=dict(normalize=True))
    assert_gpu_matches_cpu(net, [values, labels], [0])


def test_ssn_iteration_at_benchmark_size():
    """Passoc + Softmax + SpixelFeature2 and the side layers at 481x321, 600 superpixels."""
    from ssn.benchmarks.layers import iteration_net, make_inputs
    from ssn.nets.checked import CheckedNet
    from ssn.reference.grid import grid_shape

    height, width, channels = 321, 481, 20
    grid_h, grid_w = grid_shape(600, height, width)
    net = CheckedNet(iteration_net(1, channels, height, width, grid_h, grid_w), caffe.TRAIN)
    inputs = make_inputs(np.random.default_rng(9), 1, channels, height, width, grid_h, grid_w)
    results = {}
    for mode in ("cpu", "gpu"):
        set_mode(mode)
        net.forward(**inputs)
        net.net.backward()
        results[mode] = {name: (blob.data.copy(), blob.diff.copy())
                         for name, blob in net.net.blobs.items()}
    for name, (data, diff) in results["cpu"].items():
        gpu_data, gpu_diff = results["gpu"][name]
        for what, expected, actual in (("data", data, gpu_data), ("diff", diff, gpu_diff)):
            scale = max(1.0, float(np.abs(expected).max()))
            np.testing.assert_allclose(actual, expected, rtol=1e-3, atol=1e-4 * scale,
                                       err_msg=f"{name} {what}")


@pytest.mark.parametrize("num_steps", [1, 4])
def test_slic_iterations_forward(num_steps):
    """The fused iterations (forward only): labels, final centres and association."""
    from caffe import layers as L

    from ssn.nets.checked import CheckedNet

    rng = np.random.default_rng(10)
    features = rng.normal(size=(NUM, CHANNELS, HEIGHT, WIDTH))
    spixels = rng.normal(size=(NUM, CHANNELS, 1, GRID_H * GRID_W))
    n = caffe.NetSpec()
    n.feat = L.Input(shape=dict(dim=list(features.shape)))
    n.spix = L.Input(shape=dict(dim=list(spixels.shape)))
    n.cells = L.Input(shape=dict(dim=[NUM, 1, HEIGHT, WIDTH]))
    n.labels, n.centres, n.assoc = L.SlicIterations(
        n.feat, n.spix, n.cells, ntop=3, spixel_feature2_param=grid_params(scale_value=-1),
        slic_iterations_param=dict(num_steps=num_steps))
    net = CheckedNet(n.to_proto())
    results = forward_on_both(net, feat=features, spix=spixels, cells=cells())
    for name, expected in results["cpu"].items():
        scale = max(1.0, float(np.abs(expected).max()))
        np.testing.assert_allclose(results["gpu"][name], expected, rtol=1e-4,
                                   atol=1e-4 * scale, err_msg=name)


@pytest.mark.parametrize("bias", [True, False])
def test_a_relu_convolution_forward(bias):
    """Patch 0015: convolution_output_param.relu on the GPU gives what the CPU gives."""
    from caffe import layers as L

    from ssn.nets.checked import CheckedNet

    rng = np.random.default_rng(11)
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[NUM, CHANNELS, HEIGHT, WIDTH]))
    n.conv = L.Convolution(n.data, num_output=6, kernel_size=3, pad=1, bias_term=bias,
                           weight_filler=dict(type="gaussian", std=0.3),
                           bias_filler=dict(type="gaussian", std=0.3),
                           convolution_output_param=dict(relu=True))
    net = CheckedNet(n.to_proto())
    x = rng.normal(size=(NUM, CHANNELS, HEIGHT, WIDTH))
    results = {mode: outputs["conv"] for mode, outputs in forward_on_both(net, data=x).items()}
    assert (results["cpu"] == 0).mean() > 0.2 and results["cpu"].max() > 0
    np.testing.assert_allclose(results["gpu"], results["cpu"], rtol=1e-4, atol=1e-4)


def test_interp_with_a_reference():
    """The zoomed grid's top-left corner, the reference's size (37 x 53 x 3 -> 109 x 157)."""
    image = np.random.default_rng(12).normal(size=(NUM, CHANNELS, HEIGHT, WIDTH))
    reference = np.zeros((1, 1, 100, 156))
    net = single_layer_net("Interp", [image.shape, reference.shape],
                           interp_param=dict(zoom_factor=3))
    assert_gpu_matches_cpu(net, [image, reference], [0])


def concat_convolution_params(engine, **extra):
    return dict(num_output=15, kernel_size=3, pad=1, engine=engine,
                weight_filler=dict(type="gaussian", std=0.1),
                bias_filler=dict(type="gaussian", std=1), **extra)


@pytest.mark.parametrize("engine", ["DEFAULT", "CAFFE"])
def test_concat_convolution(engine):
    """Outputs, bottom diffs and weight and bias diffs; DEFAULT is cuDNN where built."""
    rng = np.random.default_rng(13)
    bottoms = [rng.normal(size=(NUM, c, HEIGHT, WIDTH)) for c in (CHANNELS, 64, 3)]
    net = single_layer_net("ConcatConvolution", [b.shape for b in bottoms],
                           convolution_param=concat_convolution_params(
                               getattr(caffe.params.Convolution, engine)))
    top_diff = rng.normal(size=(NUM, 15, HEIGHT, WIDTH))
    results = {}
    for mode in ("cpu", "gpu"):
        set_mode(mode)
        net.net.clear_param_diffs()
        tops, diffs = run_on(mode, net, bottoms, [top_diff])
        results[mode] = ([tops["top0"]] + [diffs[f"bottom{i}"] for i in range(3)]
                         + [blob.diff.copy() for blob in net.net.params["top0"]])
    names = ["top", "bottom0 diff", "bottom1 diff", "bottom2 diff", "weight diff", "bias diff"]
    for name, expected, actual in zip(names, results["cpu"], results["gpu"]):
        scale = max(1.0, float(np.abs(expected).max()))
        assert np.abs(expected).max() > 0, name
        np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-4 * scale, err_msg=name)


def test_a_relu_concat_convolution_forward():
    """convolution_output_param.relu after the parts' sum, as the CPU applies it."""
    from caffe import layers as L

    from ssn.nets.checked import CheckedNet

    rng = np.random.default_rng(14)
    n = caffe.NetSpec()
    n.first = L.Input(shape=dict(dim=[NUM, CHANNELS, HEIGHT, WIDTH]))
    n.second = L.Input(shape=dict(dim=[NUM, 64, HEIGHT, WIDTH]))
    n.conv = L.ConcatConvolution(
        n.first, n.second, convolution_output_param=dict(relu=True),
        convolution_param=concat_convolution_params(caffe.params.Convolution.DEFAULT))
    net = CheckedNet(n.to_proto())
    inputs = dict(first=rng.normal(size=(NUM, CHANNELS, HEIGHT, WIDTH)),
                  second=rng.normal(size=(NUM, 64, HEIGHT, WIDTH)))
    results = {mode: outputs["conv"] for mode, outputs in forward_on_both(net, **inputs).items()}
    assert (results["cpu"] == 0).mean() > 0.2 and results["cpu"].max() > 0
    np.testing.assert_allclose(results["gpu"], results["cpu"], rtol=1e-4, atol=1e-4)
