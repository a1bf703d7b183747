"""SpixelToPixel: the float64 reference by hand and by central differences, the Caffe CPU
layer against it (odd sizes, batch 2, border cells, a threaded size), its gradient by
differences through pycaffe, the chain of layers it replaces in the label loss, and its
Python checks (CheckedNet)."""
import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2

from ssn.grid import init_cells
from ssn.nets.checked import CheckedNet, single_layer_net
from ssn.nets.checks import NetCheckError, check_index_inputs, infer_shapes
from ssn.nets.generators import SSNConfig, mix_superpixel_values, train_net
from ssn.nets.weights import initialize_helper_weights, inputs_for_data_layers
from ssn.reference import grid, spixel_to_pixel

# (N, C, H, W, K_h, K_w): odd sizes, batch 2, one-cell, one-row and one-column grids
# (every neighbour of some channel lies outside), one pixel per cell.
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


def random_inputs(rng, num, channels, height, width, grid_h, grid_w):
    spixels = rng.normal(size=(num, channels, 1, grid_h * grid_w))
    assoc = rng.uniform(0, 1, size=(num, 9, height, width))
    return spixels, assoc, cells_for(num, height, width, grid_h, grid_w)


def layer_net(num, channels, height, width, grid_h, grid_w):
    return single_layer_net(
        "SpixelToPixel", [(num, channels, 1, grid_h * grid_w), (num, 9, height, width),
                          (num, 1, height, width)],
        spixel_feature2_param=dict(num_spixels_h=grid_h, num_spixels_w=grid_w))


def run(net, inputs, top_diff):
    """Forward, then backward of ``top_diff``; the top and the diffs of S and Q."""
    tops = net.forward(**{f"bottom{i}": value for i, value in enumerate(inputs)})
    diffs = net.backward({"top0": top_diff}, ["bottom0", "bottom1"])
    return tops["top0"].copy(), diffs["bottom0"].copy(), diffs["bottom1"].copy()


def assert_close(actual, expected, rtol=1e-4, atol=1e-4):
    """float32 Caffe against the float64 reference, scaled to the values' size."""
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale)


# --------------------------------------------------------------------------------------------
# The reference


def test_reference_by_hand_on_a_one_row_grid():
    # A 1 x 2 grid: a pixel of cell 0 has channels 4 (cell 0) and 5 (cell 1) only.
    spixels = np.array([[[[1.0, 10.0]], [[-2.0, 3.0]]]])  # 1 x 2 x 1 x 2
    assoc = np.zeros((1, 9, 1, 2))
    assoc[0, :, 0, 0] = np.arange(1, 10) / 10  # every channel, valid or not
    assoc[0, :, 0, 1] = 1.0
    cells = np.array([[[[0.0, 1.0]]]])
    top = spixel_to_pixel.forward(spixels, assoc, cells, 1, 2)
    # pixel 0: 0.5 * S[:, 0] + 0.6 * S[:, 1]; pixel 1: 0.4 * S[:, 0] + 0.5 * S[:, 1] for
    # channels 3 (cell 0) and 4 (cell 1), all weights 1.
    np.testing.assert_allclose(top[0, :, 0, 0], [0.5 + 6.0, -1.0 + 1.8])
    np.testing.assert_allclose(top[0, :, 0, 1], [1.0 + 10.0, -2.0 + 3.0])
    top_diff = np.ones_like(top)
    d_spixels, d_assoc = spixel_to_pixel.backward(spixels, assoc, cells, 1, 2, top_diff)
    np.testing.assert_allclose(d_spixels[0, :, 0], [[0.5 + 1.0, 0.6 + 1.0]] * 2)
    expected = np.zeros((9, 2))
    expected[[4, 5], 0] = [-1.0, 13.0]
    expected[[3, 4], 1] = [-1.0, 13.0]
    np.testing.assert_allclose(d_assoc[0, :, 0], expected)


def test_reference_is_the_transpose_of_the_association_sums():
    # <top(S), G> = <S, dS(G)>: the forward is linear in S and the backward its transpose.
    rng = np.random.default_rng(10)
    spixels, assoc, cells = random_inputs(rng, 2, 3, 7, 9, 2, 3)
    top_diff = rng.normal(size=(2, 3, 7, 9))
    top = spixel_to_pixel.forward(spixels, assoc, cells, 2, 3)
    d_spixels, d_assoc = spixel_to_pixel.backward(spixels, assoc, cells, 2, 3, top_diff)
    assert np.sum(top * top_diff) == pytest.approx(np.sum(spixels * d_spixels), rel=1e-12)
    assert np.sum(top * top_diff) == pytest.approx(np.sum(assoc * d_assoc), rel=1e-12)


def test_reference_backward_by_central_differences():
    rng = np.random.default_rng(11)
    spixels, assoc, cells = random_inputs(rng, 2, 3, 7, 9, 2, 3)
    top_diff = rng.normal(size=(2, 3, 7, 9))
    d_spixels, d_assoc = spixel_to_pixel.backward(spixels, assoc, cells, 2, 3, top_diff)
    eps = 1e-6

    def loss(s, q):
        return float(np.sum(spixel_to_pixel.forward(s, q, cells, 2, 3) * top_diff))

    for x, analytic, which in ((spixels, d_spixels, 0), (assoc, d_assoc, 1)):
        assert np.abs(analytic).max() > 0
        flat = rng.choice(x.size, size=min(x.size, 40), replace=False)
        for f in flat:
            index = np.unravel_index(f, x.shape)
            plus, minus = x.copy(), x.copy()
            plus[index] += eps
            minus[index] -= eps
            args_plus = (plus, assoc) if which == 0 else (spixels, plus)
            args_minus = (minus, assoc) if which == 0 else (spixels, minus)
            numeric = (loss(*args_plus) - loss(*args_minus)) / (2 * eps)
            assert numeric == pytest.approx(analytic[index], rel=1e-5, abs=1e-6), index
    # Invalid channels of border pixels (cell 0 of the 2 x 3 grid: channels 0-3, 6)
    # get no gradient.
    assert not d_assoc[:, [0, 1, 2, 3, 6], 0, 0].any()


def test_reference_refuses_bad_inputs():
    rng = np.random.default_rng(12)
    spixels, assoc, cells = random_inputs(rng, 1, 2, 4, 5, 2, 2)
    with pytest.raises(ValueError, match="spixels must have shape"):
        spixel_to_pixel.forward(spixels, assoc, cells, 2, 3)
    cells[0, 0, 1, 2] = 4
    with pytest.raises(ValueError, match="out of range"):
        spixel_to_pixel.forward(spixels, assoc, cells, 2, 2)
    with pytest.raises(ValueError, match="9 channel"):
        spixel_to_pixel.forward(spixels, assoc[:, :4], cells, 2, 2)


# --------------------------------------------------------------------------------------------
# The Caffe layer (CPU) against the reference


@pytest.mark.slow
@pytest.mark.parametrize("geometry", GEOMETRIES + [(2, 5, 97, 131, 7, 9)],
                         ids=GEOMETRY_IDS + ["2x5x97x131_7x9_threaded"])
def test_layer_matches_the_reference(geometry):
    num, channels, height, width, grid_h, grid_w = geometry
    rng = np.random.default_rng(13)
    spixels, assoc, cells = random_inputs(rng, num, channels, height, width, grid_h, grid_w)
    top_diff = rng.normal(size=(num, channels, height, width))
    net = layer_net(num, channels, height, width, grid_h, grid_w)
    top, d_spixels, d_assoc = run(net, [spixels, assoc, cells], top_diff)
    assert_close(top, spixel_to_pixel.forward(spixels, assoc, cells, grid_h, grid_w))
    expected_s, expected_q = spixel_to_pixel.backward(spixels, assoc, cells, grid_h, grid_w,
                                                      top_diff)
    assert_close(d_spixels, expected_s)
    assert_close(d_assoc, expected_q)
    assert np.abs(d_spixels).max() > 0 and np.abs(d_assoc).max() > 0


def test_layer_with_cells_that_are_not_the_floor_grid():
    # Any cell map: random cells, so rows hold many short runs and border cells anywhere.
    rng = np.random.default_rng(14)
    spixels, assoc, _ = random_inputs(rng, 2, 3, 9, 11, 3, 4)
    cells = rng.integers(0, 12, size=(2, 1, 9, 11)).astype(np.float64)
    top_diff = rng.normal(size=(2, 3, 9, 11))
    top, d_spixels, d_assoc = run(layer_net(2, 3, 9, 11, 3, 4), [spixels, assoc, cells],
                                  top_diff)
    assert_close(top, spixel_to_pixel.forward(spixels, assoc, cells, 3, 4))
    expected_s, expected_q = spixel_to_pixel.backward(spixels, assoc, cells, 3, 4, top_diff)
    assert_close(d_spixels, expected_s)
    assert_close(d_assoc, expected_q)


def test_layer_gradient_by_differences():
    # L = <top, G> is linear in S and in Q, so central differences along random
    # directions are exact up to float32 rounding.
    rng = np.random.default_rng(15)
    shape = (2, 3, 7, 9, 2, 3)
    spixels, assoc, cells = random_inputs(rng, *shape)
    top_diff = rng.normal(size=(2, 3, 7, 9))
    net = layer_net(*shape)
    _, d_spixels, d_assoc = run(net, [spixels, assoc, cells], top_diff)

    def loss(s, q):
        top = net.forward(bottom0=s, bottom1=q, bottom2=cells)["top0"]
        return float(np.sum(top.astype(np.float64) * top_diff))

    eps = 1e-2
    for _ in range(3):
        ds = rng.normal(size=spixels.shape)
        dq = rng.normal(size=assoc.shape)
        numeric_s = (loss(spixels + eps * ds, assoc) - loss(spixels - eps * ds, assoc)) / (2 * eps)
        numeric_q = (loss(spixels, assoc + eps * dq) - loss(spixels, assoc - eps * dq)) / (2 * eps)
        assert numeric_s == pytest.approx(np.sum(d_spixels * ds), rel=1e-3, abs=1e-3)
        assert numeric_q == pytest.approx(np.sum(d_assoc * dq), rel=1e-3, abs=1e-3)


@pytest.mark.filterwarnings("ignore::ssn.nets.checks.GridFitWarning")
def test_layer_reshapes_with_its_bottoms():
    rng = np.random.default_rng(16)
    net = layer_net(1, 2, 6, 7, 2, 3)
    for num, height, width in ((1, 6, 7), (2, 9, 5)):
        spixels, assoc, cells = random_inputs(rng, num, 2, height, width, 2, 3)
        net.net.blobs["bottom0"].reshape(*spixels.shape)
        net.net.blobs["bottom1"].reshape(*assoc.shape)
        net.net.blobs["bottom2"].reshape(*cells.shape)
        net.net.reshape()
        top = net.forward(bottom0=spixels, bottom1=assoc, bottom2=cells)["top0"]
        assert_close(top, spixel_to_pixel.forward(spixels, assoc, cells, 2, 3))


# --------------------------------------------------------------------------------------------
# The label loss's chain that the layer replaces


def mixing_net(num, channels, height, width, grid_h, grid_w, fused):
    """Input S, Q, cells -> mix_superpixel_values, fused or the original's chain."""
    spec = caffe.NetSpec()
    spec.S = caffe.layers.Input(shape=dict(dim=[num, channels, 1, grid_h * grid_w]))
    spec.Q = caffe.layers.Input(shape=dict(dim=[num, 9, height, width]))
    spec.cells = caffe.layers.Input(shape=dict(dim=[num, 1, height, width]))
    mix_superpixel_values(spec, spec.S, spec.Q, spec.cells, grid_h, grid_w, channels,
                          fused=fused)
    param = spec.to_proto()
    param.force_backward = True
    net = CheckedNet(param).net
    initialize_helper_weights(net)
    return net


@pytest.mark.parametrize("geometry", [(2, 5, 19, 23, 3, 4), (1, 50, 21, 17, 2, 2),
                                      (2, 1, 9, 13, 1, 3)],
                         ids=["2x5x19x23_3x4", "label_channels", "one_channel_row_grid"])
def test_layer_equals_the_chain(geometry):
    num, channels, height, width, grid_h, grid_w = geometry
    rng = np.random.default_rng(17)
    spixels, assoc, cells = random_inputs(rng, num, channels, height, width, grid_h, grid_w)
    top_diff = rng.normal(size=(num, channels, height, width))
    results = []
    for fused in (True, False):
        net = mixing_net(num, channels, height, width, grid_h, grid_w, fused)
        assert ("SpixelToPixel" in [layer.type for layer in net.layers]) == fused
        net.forward(S=spixels, Q=assoc, cells=cells)
        net.blobs["Convolution9"].diff[...] = top_diff
        net.backward()
        results.append([net.blobs[name].data.copy() if name == "Convolution9"
                        else net.blobs[name].diff.copy() for name in ("Convolution9", "S", "Q")])
    for fused_value, chain_value in zip(*results):
        scale = float(np.abs(chain_value).max())
        assert scale > 0
        np.testing.assert_allclose(fused_value, chain_value, rtol=1e-5, atol=1e-5 * scale)


def train_batch(rng, config):
    height, width = config.height, config.width
    cells = init_cells(height, width, *config.grid)[None, None].astype(float).repeat(2, 0)
    labels = rng.integers(0, config.num_label_channels, size=(2, 1, height, width))
    onehot = (labels == np.arange(config.num_label_channels)[None, :, None, None])
    return dict(img=rng.normal(size=(2, 3, height, width)) * 20, spixel_init=cells,
                feat_spixel_init=cells, label=labels.astype(float),
                problabel=onehot.astype(float))


@pytest.mark.parametrize("target", ["labels", "continuous"])
def test_train_nets_with_the_layer_and_the_chain_agree(target):
    """The whole train net (pixel features, 2 steps): same losses and gradients."""
    base = dict(height=19, width=23, grid_request=12, num_steps=2, feature_dim=5, batch_size=2,
                num_label_channels=6, target=target, continuous_loss="expected")
    rng = np.random.default_rng(18)
    inputs = None
    results = []
    for fused in (True, False):
        config = SSNConfig(**base, fused_decoder=fused)
        if inputs is None:
            inputs = train_batch(rng, config)
            if target == "continuous":
                inputs = {key: inputs[key] for key in ("img", "spixel_init",
                                                       "feat_spixel_init")}
                inputs["target"] = rng.normal(size=(2, 2, 19, 23))
        param = inputs_for_data_layers(train_net(config), caffe.TRAIN,
                                       {key: value.shape for key, value in inputs.items()})
        assert ("SpixelToPixel" in {layer.type for layer in param.layer}) == fused
        assert ("Tile1" in {layer.name for layer in param.layer}) == (not fused)
        param.force_backward = True  # pixel mode has no weights to learn
        net = CheckedNet(param, caffe.TRAIN).net
        initialize_helper_weights(net)
        net.forward(**inputs)
        net.backward()
        losses = {name: float(net.blobs[name].data) for name in net.outputs}
        results.append((losses, net.blobs["final_pixel_assoc"].diff.copy(),
                        net.blobs["pixel_features"].data.copy()))
    (losses_fused, assoc_fused, _), (losses_chain, assoc_chain, _) = results
    assert losses_fused.keys() == losses_chain.keys()
    for name in losses_chain:
        assert losses_fused[name] == pytest.approx(losses_chain[name], rel=1e-5, abs=1e-9)
    scale = float(np.abs(assoc_chain).max())
    assert scale > 0
    np.testing.assert_allclose(assoc_fused, assoc_chain, rtol=1e-4, atol=1e-5 * scale)


def test_the_default_train_net_has_no_chain_and_no_helper_weights():
    param = train_net(SSNConfig())
    types = [layer.type for layer in param.layer]
    names = [layer.name for layer in param.layer]
    assert types.count("SpixelToPixel") == 1 and "Smear1" not in names
    assert not any(name.startswith("concat_spixel_feat") for name in names)
    assert "recon_feat_50" not in names
    chain = train_net(SSNConfig(fused_decoder=False))
    assert "SpixelToPixel" not in [layer.type for layer in chain.layer]
    assert any(layer.name == "concat_spixel_feat_50" for layer in chain.layer)


# --------------------------------------------------------------------------------------------
# CheckedNet's Python checks


def one_layer_param(shapes, **layer_fields):
    spec = caffe.NetSpec()
    bottoms = []
    for index, shape in enumerate(shapes):
        bottom = caffe.layers.Input(shape=dict(dim=list(shape)))
        spec[f"bottom{index}"] = bottom
        bottoms.append(bottom)
    spec.top0 = caffe.layers.SpixelToPixel(*bottoms, **layer_fields)
    return spec.to_proto()


GRID = dict(spixel_feature2_param=dict(num_spixels_h=2, num_spixels_w=3))


def test_checks_give_the_top_shape():
    param = one_layer_param([(2, 4, 1, 6), (2, 9, 7, 9), (2, 1, 7, 9)], **GRID)
    assert infer_shapes(param)["top0"] == (2, 4, 7, 9)


@pytest.mark.parametrize("shapes, fields, message", [
    ([(2, 4, 1, 6), (2, 9, 7, 9), (2, 1, 7, 9)], {}, "num_spixels_h and num_spixels_w"),
    ([(2, 4, 1, 6), (2, 9, 7, 9), (2, 1, 7, 9)],
     dict(spixel_feature2_param=dict(num_spixels_h=0, num_spixels_w=3)), "at least 1x1"),
    ([(2, 4, 1, 8), (2, 9, 7, 9), (2, 1, 7, 9)], GRID, "superpixel values"),
    ([(2, 4, 6, 1), (2, 9, 7, 9), (2, 1, 7, 9)], GRID, "superpixel values"),
    ([(2, 4, 1, 6), (2, 8, 7, 9), (2, 1, 7, 9)], GRID, "9 channels"),
    ([(2, 4, 1, 6), (2, 9, 7, 9), (2, 1, 7, 8)], GRID, "the cell map"),
    ([(2, 4, 1, 6), (2, 9, 7, 9), (2, 2, 7, 9)], GRID, "the cell map"),
    ([(2, 4, 1, 6), (1, 9, 7, 9), (2, 1, 7, 9)], GRID, "batch size"),
    ([(2, 4, 1, 6), (2, 9, 7, 9), (2, 1, 7, 9)],
     dict(propagate_down=[True, True, True], **GRID), "cannot backpropagate to bottom 2"),
], ids=["no_grid", "empty_grid", "wrong_k", "k_on_height", "assoc_channels", "map_size",
        "map_channels", "batch", "propagate_to_cells"])
def test_checks_refuse_what_caffe_would_abort_on(shapes, fields, message):
    param = one_layer_param(shapes, **fields)
    with pytest.raises(NetCheckError, match=message):
        CheckedNet(param)


def test_checks_refuse_a_wrong_bottom_count():
    param = one_layer_param([(2, 4, 1, 6), (2, 9, 7, 9)], **GRID)
    with pytest.raises(NetCheckError, match="takes 3 bottom blobs"):
        CheckedNet(param)


def test_checks_refuse_out_of_range_cells():
    param = one_layer_param([(1, 2, 1, 6), (1, 9, 4, 5), (1, 1, 4, 5)], **GRID)
    cells = np.zeros((1, 1, 4, 5))
    cells[0, 0, 3, 4] = 6
    with pytest.raises(NetCheckError, match=r"initial cells in 'bottom2'.*outside \[0, 6\)"):
        check_index_inputs(param, {"bottom2": cells})
    net = CheckedNet(param)
    with pytest.raises(NetCheckError, match="outside"):
        net.forward(bottom0=np.zeros((1, 2, 1, 6)), bottom1=np.zeros((1, 9, 4, 5)),
                    bottom2=cells)


def test_checks_refuse_a_cell_map_read_with_two_grids():
    spec = caffe.NetSpec()
    spec.S = caffe.layers.Input(shape=dict(dim=[1, 2, 1, 6]))
    spec.F = caffe.layers.Input(shape=dict(dim=[1, 2, 6, 6]))
    spec.Q = caffe.layers.Input(shape=dict(dim=[1, 9, 6, 6]))
    spec.cells = caffe.layers.Input(shape=dict(dim=[1, 1, 6, 6]))
    spec.means = caffe.layers.SpixelFeature2(
        spec.F, spec.Q, spec.cells, spixel_feature2_param=dict(num_spixels_h=2, num_spixels_w=3))
    spec.mixed = caffe.layers.SpixelToPixel(
        spec.S, spec.Q, spec.cells, spixel_feature2_param=dict(num_spixels_h=3, num_spixels_w=2))
    with pytest.raises(NetCheckError, match="one cell map has one grid"):
        CheckedNet(spec.to_proto())


def test_the_layer_type_is_registered():
    assert "SpixelToPixel" in caffe.layer_type_list()
    assert caffe_pb2.LayerParameter(type="SpixelToPixel").type == "SpixelToPixel"


@pytest.mark.slow
def test_a_snapshot_of_the_chain_fine_tunes_the_fused_net(tmp_path, sample_root):
    """Weights saved from a net with the chain (its helper layers included) load into the
    fused net, which Caffe builds without them: the same first-iteration losses."""
    from ssn.training.solver import train
    from tests.test_training import write_tiny_training_files

    for name in ("chain", "fused"):
        (tmp_path / name).mkdir()
    chain = write_tiny_training_files(tmp_path / "chain", max_iter=4, fused_decoder=False)
    fused = write_tiny_training_files(tmp_path / "fused", max_iter=1)
    train(chain)
    snapshot = tmp_path / "chain" / "snap" / "ssn_iter_4.caffemodel"
    stored = {layer.name for layer in
              caffe_pb2.NetParameter.FromString(snapshot.read_bytes()).layer if layer.blobs}
    assert "concat_spixel_feat_8" in stored and "recon_feat_8" in stored
    again = train(chain, weights=snapshot, max_iter=1,
                  snapshot_prefix=str(tmp_path / "chain" / "again" / "ssn"))
    tuned = train(fused, weights=snapshot, max_iter=1,
                  snapshot_prefix=str(tmp_path / "fused" / "snap" / "ssn"))
    assert tuned["losses"].keys() == again["losses"].keys()
    for loss, value in again["losses"].items():
        assert tuned["losses"][loss] == pytest.approx(value, rel=1e-4, abs=1e-8), loss


@pytest.mark.gpu
def test_gpu_matches_the_cpu_and_the_chain():
    """The CUDA path (skips without a GPU build and device, as tests/test_gpu.py)."""
    from tests import test_gpu as gpu

    reason = gpu.gpu_unavailable_reason()
    if reason is not None:
        pytest.skip(reason)
    caffe.set_device(gpu.DEVICE)
    try:
        rng = np.random.default_rng(19)
        shape = (2, 5, 37, 53, 4, 6)
        spixels, assoc, cells = random_inputs(rng, *shape)
        gpu.assert_gpu_matches_cpu(layer_net(*shape), [spixels, assoc, cells], [0, 1])
        caffe.set_mode_gpu()
        top_diff = rng.normal(size=(2, 5, 37, 53))
        top, d_spixels, d_assoc = run(layer_net(*shape), [spixels, assoc, cells], top_diff)
        assert_close(top, spixel_to_pixel.forward(spixels, assoc, cells, 4, 6))
        expected_s, expected_q = spixel_to_pixel.backward(spixels, assoc, cells, 4, 6,
                                                          top_diff)
        assert_close(d_spixels, expected_s)
        assert_close(d_assoc, expected_q)
        results = []
        for fused in (True, False):
            net = mixing_net(*shape, fused)
            net.forward(S=spixels, Q=assoc, cells=cells)
            net.blobs["Convolution9"].diff[...] = top_diff
            net.backward()
            results.append([net.blobs["Convolution9"].data.copy(),
                            net.blobs["S"].diff.copy(), net.blobs["Q"].diff.copy()])
        for fused_value, chain_value in zip(*results):
            scale = float(np.abs(chain_value).max())
            np.testing.assert_allclose(fused_value, chain_value, rtol=1e-5, atol=1e-5 * scale)
    finally:
        caffe.set_mode_cpu()
