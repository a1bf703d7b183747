"""The fused SlicIterations layer through pycaffe on CPU: against the decomposed
Passoc/Softmax/SpixelFeature2/ArgMax/RelToAbsIndex chain it replaces and against
the float64 reference, for every step count, odd sizes, batch 2, edge grids and a
BSDS-size image; and its memory does not grow with the step count."""
import os
import subprocess
import sys

import caffe
import numpy as np
import pytest
from caffe import layers as L
from skimage import data, transform

from ssn.color import rgb_to_lab
from ssn.grid import grid_shape, init_cells
from ssn.nets.checked import CheckedNet
from ssn.reference import grid, slic_iterations

caffe.set_mode_cpu()

# (N, C, H, W, K_h, K_w): odd sizes, batch 2, one cell, one row and one column
# of cells, one pixel per cell, and more than 64 rows (the threaded path).
GEOMETRIES = [
    (1, 3, 7, 9, 2, 3),
    (2, 4, 8, 11, 3, 4),
    (2, 2, 5, 6, 1, 1),
    (1, 3, 6, 7, 1, 3),
    (1, 2, 7, 5, 3, 1),
    (2, 3, 4, 5, 4, 5),
    (2, 5, 97, 131, 7, 9),
]
GEOMETRY_IDS = ["1x3x7x9_2x3", "2x4x8x11_3x4", "2x2x5x6_1x1", "1x3x6x7_1x3",
                "1x2x7x5_3x1", "2x3x4x5_4x5", "2x5x97x131_7x9"]
TIE = 1e-4  # float32 associations this close are a tie for the argmax


def fused_and_decomposed(shape, grid_h, grid_w, num_steps, scale=-1.0,
                         invalid_distance=1e30):
    """One net: Inputs feat, s0, cells feed both the decomposed chain (labels,
    s<T-1>, q<T>) and SlicIterations with its three tops (f_labels, f_centres,
    f_assoc)."""
    num, channels, height, width = shape
    param = dict(num_spixels_h=grid_h, num_spixels_w=grid_w, scale_value=scale,
                 invalid_distance=invalid_distance)
    n = caffe.NetSpec()
    n.feat = L.Input(shape=dict(dim=list(shape)))
    n.s0 = L.Input(shape=dict(dim=[num, channels, 1, grid_h * grid_w]))
    n.cells = L.Input(shape=dict(dim=[num, 1, height, width]))
    centres = n.s0
    for step in range(1, num_steps + 1):
        n[f"d{step}"] = L.Passoc(n.feat, centres, n.cells, spixel_feature2_param=param)
        n[f"q{step}"] = L.Softmax(n[f"d{step}"])
        if step < num_steps:
            centres = L.SpixelFeature2(n.feat, n[f"q{step}"], n.cells,
                                       spixel_feature2_param=param)
            n[f"s{step}"] = centres
    n.relative = L.ArgMax(n[f"q{num_steps}"], argmax_param=dict(axis=1))
    n.labels = L.RelToAbsIndex(n.relative, n.cells, rel_to_abs_index_param=dict(
        num_spixels_h=grid_h, num_spixels_w=grid_w))
    n.f_labels, n.f_centres, n.f_assoc = L.SlicIterations(
        n.feat, n.s0, n.cells, ntop=3, spixel_feature2_param=param,
        slic_iterations_param=dict(num_steps=num_steps))
    return CheckedNet(n.to_proto())


def run(net, num_steps, feat, s0, cells):
    """(decomposed, fused) results, each (labels, final centres, final association)."""
    final = f"s{num_steps - 1}" if num_steps > 1 else "s0"
    out = net.forward(outputs=["labels", final, f"q{num_steps}", "f_labels", "f_centres",
                               "f_assoc"], feat=feat, s0=s0, cells=cells)
    return ((out["labels"], out[final], out[f"q{num_steps}"]),
            (out["f_labels"], out["f_centres"], out["f_assoc"]))


def assert_same_labels(labels, expected, assoc, max_ties=None):
    """Equal labels, except where ``assoc`` (the expected labels' association) has a tie."""
    differ = labels != expected
    if differ.any():
        top_two = np.sort(np.moveaxis(assoc, 1, -1)[differ[:, 0]], axis=-1)[:, -2:]
        gaps = top_two[:, 1] - top_two[:, 0]
        assert gaps.max() < TIE, f"{int(differ.sum())} labels differ, gaps up to {gaps.max()}"
    if max_ties is not None:
        assert differ.sum() <= max_ties


def assert_matches(fused, decomposed, centres_rtol=2e-4, assoc_atol=2e-5):
    labels, centres, assoc = fused
    expected_labels, expected_centres, expected_assoc = decomposed
    assert labels.shape == expected_labels.shape and centres.shape == expected_centres.shape
    scale = max(1.0, float(np.abs(expected_centres).max()))
    np.testing.assert_allclose(centres, expected_centres, rtol=centres_rtol,
                               atol=centres_rtol * scale)
    np.testing.assert_allclose(assoc, expected_assoc, atol=assoc_atol)
    assert_same_labels(labels, expected_labels, expected_assoc)


def random_inputs(rng, num, channels, height, width, grid_h, grid_w, spread=2.0):
    cells = np.broadcast_to(grid.init_cells(height, width, grid_h, grid_w),
                            (num, 1, height, width)).astype(np.float64)
    feat = rng.normal(size=(num, channels, height, width)) * spread
    s0 = rng.normal(size=(num, channels, 1, grid_h * grid_w)) * spread
    return feat, s0, cells


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=GEOMETRY_IDS)
def test_fused_equals_decomposed_for_every_step_count(geometry):
    """Both chains round differently (sums in other orders) and the steps amplify
    that: after 10 steps each is up to about 3e-5 from the float64 associations, in
    its own direction (the float64 test below bounds the fused one's error)."""
    num, channels, height, width, grid_h, grid_w = geometry
    rng = np.random.default_rng(31)
    feat, s0, cells = random_inputs(rng, num, channels, height, width, grid_h, grid_w)
    for num_steps in range(1, 11):
        net = fused_and_decomposed(feat.shape, grid_h, grid_w, num_steps)
        decomposed, fused = run(net, num_steps, feat, s0, cells)
        assert_matches(fused, decomposed, assoc_atol=5e-5)
        if grid_h * grid_w > 1:
            assert len(np.unique(fused[0])) > 1


# The small geometries, and one of more than 64 rows (the threaded path; the
# reference is slow at the largest).
FLOAT64_GEOMETRIES = GEOMETRIES[:6] + [(1, 4, 66, 50, 5, 4)]


@pytest.mark.slow
@pytest.mark.parametrize("geometry", FLOAT64_GEOMETRIES,
                         ids=GEOMETRY_IDS[:6] + ["1x4x66x50_5x4"])
def test_fused_equals_the_float64_reference(geometry):
    num, channels, height, width, grid_h, grid_w = geometry
    rng = np.random.default_rng(32)
    feat, s0, cells = random_inputs(rng, num, channels, height, width, grid_h, grid_w)
    for num_steps in (1, 2, 5, 10):
        net = fused_and_decomposed(feat.shape, grid_h, grid_w, num_steps, scale=-0.5)
        _, fused = run(net, num_steps, feat, s0, cells)
        expected = slic_iterations.forward(feat, s0, cells, grid_h, grid_w, num_steps, -0.5)
        assert_matches(fused, expected)


def test_ties_go_to_the_highest_channel_as_in_argmax():
    """Equal centres give exactly equal associations: Caffe's ArgMax takes the
    highest channel, the last valid neighbour (down-right inside the grid)."""
    rng = np.random.default_rng(36)
    feat, _, cells = random_inputs(rng, 2, 3, 9, 11, 3, 4)
    s0 = np.ones((2, 3, 1, 12))
    net = fused_and_decomposed(feat.shape, 3, 4, 1)
    (labels, _, _), (fused_labels, _, _) = run(net, 1, feat, s0, cells)
    np.testing.assert_array_equal(fused_labels, labels)
    highest = np.zeros_like(labels)
    for index, cell in np.ndenumerate(cells):
        valid = [grid.neighbour_index(int(cell), c, 3, 4) for c in range(9)]
        highest[index] = [j for j in valid if j >= 0][-1]
    np.testing.assert_array_equal(fused_labels, highest)


def test_dead_superpixels_are_zero_as_in_spixel_feature2():
    """A centre far from every pixel gets (almost) no association: below the 0.001
    threshold its next features are 0, and the next step measures distances to 0."""
    rng = np.random.default_rng(37)
    feat, s0, cells = random_inputs(rng, 2, 3, 9, 11, 3, 4)
    s0[:, :, 0, 5] = 50.0  # cell 5 of both images
    for num_steps in (2, 3):
        net = fused_and_decomposed(feat.shape, 3, 4, num_steps)
        decomposed, fused = run(net, num_steps, feat, s0, cells)
        assert_matches(fused, decomposed)
        if num_steps == 2:
            assert np.all(fused[1][:, :, 0, 5] == 0)


@pytest.mark.parametrize("invalid_distance", [0.5, 10000.0])
def test_invalid_neighbours_take_part_in_the_softmax_but_not_the_sums(invalid_distance):
    """A small invalid distance lets the channels outside the grid win: the labels
    are then RelToAbsIndex's clamped ids, and the centres still skip those pixels."""
    rng = np.random.default_rng(33)
    feat, s0, cells = random_inputs(rng, 2, 3, 9, 11, 2, 3, spread=3.0)
    for num_steps in (1, 3):
        net = fused_and_decomposed(feat.shape, 2, 3, num_steps, -1.0, invalid_distance)
        decomposed, fused = run(net, num_steps, feat, s0, cells)
        assert_matches(fused, decomposed)
        expected = slic_iterations.forward(feat, s0, cells, 2, 3, num_steps, -1.0,
                                           invalid_distance)
        assert_matches(fused, expected)


def bsds_size_features(num_steps=10, n_spixels=400):
    """Features like the deploy net's at 481x321: position and Lab of a photo
    (SSN_pix scaling), then 15 smooth random channels."""
    height, width = 321, 481
    rgb = transform.resize(data.astronaut(), (height, width), anti_aliasing=True)
    grid_h, grid_w = grid_shape(n_spixels, height, width)
    pos_scale = max(grid_h / (0.4 * height), grid_w / (0.4 * width))
    ys, xs = np.mgrid[:height, :width].astype(np.float64)
    lab = rgb_to_lab(rgb).transpose(2, 0, 1) * 0.26
    rng = np.random.default_rng(34)
    learned = transform.resize(rng.normal(size=(40, 60, 15)), (height, width)).transpose(2, 0, 1)
    feat = np.concatenate([[ys * pos_scale, xs * pos_scale], lab, 5 * learned])[None]
    cells = init_cells(height, width, grid_h, grid_w)[None, None].astype(np.float64)
    sums = np.zeros((20, grid_h * grid_w))
    counts = np.bincount(cells.ravel().astype(int), minlength=grid_h * grid_w)
    for k in range(20):
        sums[k] = np.bincount(cells.ravel().astype(int), feat[0, k].ravel(),
                              minlength=grid_h * grid_w)
    s0 = (sums / counts)[None, :, None, :]
    return feat, s0, cells, grid_h, grid_w


@pytest.mark.slow
def test_fused_equals_decomposed_at_bsds_size():
    """At 481x321 with 20 channels, distances reach 1000 (float32 steps of 1e-4), so
    one step's associations agree to 1e-4, as each agrees with float64. Rounding
    differences (in the order of the sums) grow over the steps, as they do between
    any two float32 evaluations: ten steps agree to about 1e-3 of the centres, with a
    few associations off by more than 1e-3 where a pixel sits between two centres."""
    feat, s0, cells, grid_h, grid_w = bsds_size_features()
    for num_steps in (1, 10):
        net = fused_and_decomposed(feat.shape, grid_h, grid_w, num_steps)
        (labels, centres, assoc), fused = run(net, num_steps, feat, s0, cells)
        if num_steps == 1:
            assert_matches(fused, (labels, centres, assoc), assoc_atol=1e-4)
            continue
        np.testing.assert_allclose(fused[1], centres, rtol=2e-3, atol=2e-3)
        assert np.mean(np.abs(fused[2] - assoc) > 1e-3) < 1e-4
        # Ties aside, every label agrees: at most 0.1% of the pixels differ.
        assert_same_labels(fused[0], labels, assoc, max_ties=labels.size // 1000)
        assert len(np.unique(fused[0])) > 0.9 * grid_h * grid_w


MEMORY_SCRIPT = """
import resource, caffe, numpy as np
from caffe import layers as L
from ssn.grid import init_cells
from ssn.nets.checked import CheckedNet
caffe.set_mode_cpu()
shape, grid_h, grid_w = (1, 20, 321, 481), 16, 24
rng = np.random.default_rng(35)
inputs = dict(feat=rng.normal(size=shape), s0=rng.normal(size=(1, 20, 1, grid_h * grid_w)),
              cells=init_cells(321, 481, grid_h, grid_w)[None, None].astype(float))
nets = []
for num_steps in (2, 40):
    n = caffe.NetSpec()
    n.feat = L.Input(shape=dict(dim=list(shape)))
    n.s0 = L.Input(shape=dict(dim=[1, 20, 1, grid_h * grid_w]))
    n.cells = L.Input(shape=dict(dim=[1, 1, 321, 481]))
    n.labels = L.SlicIterations(n.feat, n.s0, n.cells, spixel_feature2_param=dict(
        num_spixels_h=grid_h, num_spixels_w=grid_w, scale_value=-1),
        slic_iterations_param=dict(num_steps=num_steps))
    nets.append(CheckedNet(n.to_proto()))
    nets[-1].set_inputs(inputs)
nets[0].net.forward()
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
nets[1].net.forward()
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
"""


@pytest.mark.slow
def test_memory_does_not_grow_with_the_step_count():
    """Every step reuses the same buffers: 40 steps take no more memory than 2.
    In a fresh process, so that the peak is this test's own."""
    result = subprocess.run([sys.executable, "-c", MEMORY_SCRIPT], capture_output=True,
                            text=True, env=dict(os.environ, GLOG_minloglevel="2"), timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    grown = int(result.stdout.split()[-1])  # kB
    # A 9 x 321 x 481 float buffer per step would be 5.6 MB each, 220 MB over 40 steps.
    assert grown < 20_000, f"peak memory grew by {grown} kB"


@pytest.mark.parametrize("geometry", [GEOMETRIES[1], GEOMETRIES[6]],
                         ids=[GEOMETRY_IDS[1], GEOMETRY_IDS[6]])
def test_packing_once_equals_packing_every_step(geometry, monkeypatch):
    """Features packed once for all steps (the default up to 64 MB) or again in
    every step (SSN_SLIC_PACK_ONCE=0, as for larger inputs) give the same bits."""
    num, channels, height, width, grid_h, grid_w = geometry
    rng = np.random.default_rng(36)
    feat, s0, cells = random_inputs(rng, num, channels, height, width, grid_h, grid_w)
    for num_steps in (1, 2, 7):
        net = fused_and_decomposed(feat.shape, grid_h, grid_w, num_steps)
        monkeypatch.delenv("SSN_SLIC_PACK_ONCE", raising=False)
        _, once = run(net, num_steps, feat, s0, cells)  # copies of the blobs
        monkeypatch.setenv("SSN_SLIC_PACK_ONCE", "0")
        decomposed, every_step = run(net, num_steps, feat, s0, cells)
        for a, b in zip(once, every_step):
            np.testing.assert_array_equal(a, b)
        assert_matches(once, decomposed)
