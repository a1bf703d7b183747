"""Bad parameters and inputs give a clear NetCheckError before Caffe can abort."""
import subprocess
import sys
import textwrap

import caffe
import numpy as np
import pytest
from caffe import layers as L

from ssn.nets.checked import CheckedNet, single_layer_net
from ssn.nets.checks import NetCheckError, infer_shapes


def passoc_net(grid=(2, 3), channels=(3, 3), spixels=6, **grid_param):
    param = dict(num_spixels_h=grid[0], num_spixels_w=grid[1])
    param.update(grid_param)
    n = caffe.NetSpec()
    n.feat = L.Input(shape=dict(dim=[1, channels[0], 5, 7]))
    n.spix = L.Input(shape=dict(dim=[1, channels[1], 1, spixels]))
    n.cells = L.Input(shape=dict(dim=[1, 1, 5, 7]))
    n.dist = L.Passoc(n.feat, n.spix, n.cells, spixel_feature2_param=param)
    return n.to_proto()


def test_missing_num_spixels_h():
    net_param = passoc_net()
    net_param.layer[-1].spixel_feature2_param.ClearField("num_spixels_h")
    with pytest.raises(NetCheckError, match="num_spixels_h and num_spixels_w are required"):
        CheckedNet(net_param)


def test_channel_mismatch_names_layer_and_shapes():
    with pytest.raises(NetCheckError, match=r"Passoc layer 'dist': superpixel features .* "
                                            r"1 x 3 x 1 x 6 .* got 1 x 4 x 1 x 6"):
        CheckedNet(passoc_net(channels=(3, 4)))


def test_superpixel_count_must_match_grid():
    with pytest.raises(NetCheckError, match="2x3 grid"):
        CheckedNet(passoc_net(spixels=5))


def test_cell_index_out_of_range_at_forward():
    net = CheckedNet(passoc_net())
    cells = np.zeros((1, 1, 5, 7))
    cells[0, 0, 4, 6] = 6
    with pytest.raises(NetCheckError, match=r"initial cells in 'cells': 1 value\(s\) outside "
                                            r"\[0, 6\), e.g. 6 at index \(0, 0, 4, 6\)"):
        net.forward(feat=np.zeros((1, 3, 5, 7)), spix=np.zeros((1, 3, 1, 6)), cells=cells)


def test_negative_index_other_than_ignore_is_rejected():
    net = single_layer_net("SpixelFeature", [(1, 2, 3, 3), (1, 1, 3, 3)],
                           spixel_feature_param=dict(max_spixels=4, ignore_idx_value=-10))
    ids = np.zeros((1, 1, 3, 3))
    ids[0, 0, 0, 0] = -10  # ignored: fine
    net.forward(bottom0=np.ones((1, 2, 3, 3)), bottom1=ids)
    ids[0, 0, 1, 1] = -1
    with pytest.raises(NetCheckError, match=r"outside \[0, 4\) or -10"):
        net.forward(bottom0=np.ones((1, 2, 3, 3)), bottom1=ids)


def test_label_out_of_range():
    net = single_layer_net("LossWithoutSoftmax", [(1, 3, 2, 2), (1, 1, 2, 2)],
                           loss_param=dict(ignore_label=255))
    with pytest.raises(NetCheckError, match="labels in 'bottom1'"):
        net.forward(bottom0=np.full((1, 3, 2, 2), 0.5), bottom1=np.full((1, 1, 2, 2), 3))


@pytest.mark.parametrize("option, message", [
    (dict(sum_shift=0), "sum_shift must be positive and finite, got 0"),
    (dict(sum_shift=-1e-12), "sum_shift must be positive and finite"),
    (dict(sum_shift=float("inf")), "sum_shift must be positive and finite, got inf"),
    (dict(shift=float("nan")), "shift must be finite, got nan"),
], ids=["zero_sum_shift", "negative_sum_shift", "infinite_sum_shift", "nan_shift"])
def test_bad_normalise_shifts(option, message):
    with pytest.raises(NetCheckError, match=message):
        single_layer_net("LossWithoutSoftmax", [(1, 3, 2, 2), (1, 1, 2, 2)],
                         loss_without_softmax_param=dict(normalize=True, **option))


def test_missing_max_spixels():
    with pytest.raises(NetCheckError, match="max_spixels is required"):
        single_layer_net("SpixelFeature", [(1, 2, 3, 3), (1, 1, 3, 3)])


def test_unsupported_pixel_feature_mode():
    with pytest.raises(NetCheckError, match="RANDOM_POSITION is not supported"):
        single_layer_net("PixelFeature", [(1, 3, 4, 4)], pixel_feature_param=dict(
            type=caffe.params.PixelFeature.RANDOM_POSITION))


def test_backprop_into_index_bottom_is_refused():
    net_param = passoc_net()
    net_param.layer[-1].propagate_down.extend([True, True, True])
    with pytest.raises(NetCheckError, match="cannot backpropagate to bottom 2"):
        CheckedNet(net_param)


def test_input_shape_change_is_checked_before_reshape():
    net = CheckedNet(passoc_net())
    with pytest.raises(NetCheckError, match="cell map"):
        net.forward(feat=np.zeros((1, 3, 6, 7)), spix=np.zeros((1, 3, 1, 6)),
                    cells=np.zeros((1, 1, 5, 7)))


def test_interp_pads_must_crop():
    with pytest.raises(NetCheckError, match="must be <= 0"):
        single_layer_net("Interp", [(1, 1, 4, 4)], interp_param=dict(zoom_factor=2, pad_beg=1))


def test_shapes_flow_through_standard_layers():
    n = caffe.NetSpec()
    n.img = L.Input(shape=dict(dim=[1, 3, 201, 201]))
    n.conv = L.Convolution(n.img, num_output=64, kernel_size=3, pad=1)
    n.pool = L.Pooling(n.conv, pool=caffe.params.Pooling.MAX, kernel_size=3, stride=2, pad=1)
    n.pool2 = L.Pooling(n.pool, pool=caffe.params.Pooling.MAX, kernel_size=3, stride=2, pad=1)
    n.up = L.Interp(n.pool2, interp_param=dict(zoom_factor=4))
    n.crop = L.Crop(n.up, n.conv)
    n.cat = L.Concat(n.img, n.conv, n.crop)
    shapes = infer_shapes(n.to_proto())
    assert shapes["pool"] == (1, 64, 101, 101)
    assert shapes["pool2"] == (1, 64, 51, 51)
    assert shapes["up"] == (1, 64, 201, 201)
    assert shapes["cat"] == (1, 131, 201, 201)
    built = CheckedNet(n.to_proto()).net
    for name, shape in shapes.items():
        assert built.blobs[name].data.shape == shape


@pytest.mark.slow
def test_caffe_itself_would_abort_with_our_message(tmp_path):
    """Without the Python checks, the C++ CHECK fires (and kills the process)."""
    prototxt = tmp_path / "bad.prototxt"
    net_param = passoc_net()
    net_param.layer[-1].spixel_feature2_param.ClearField("num_spixels_w")
    prototxt.write_text(str(net_param))
    script = textwrap.dedent(f"""
        import caffe
        caffe.Net({str(prototxt)!r}, caffe.TEST)
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0
    assert "num_spixels_h and num_spixels_w are required" in result.stderr


def slic_net(num_steps=3, spixels=6, cells_shape=(1, 1, 5, 7), **layer):
    n = caffe.NetSpec()
    n.feat = L.Input(shape=dict(dim=[1, 3, 5, 7]))
    n.spix = L.Input(shape=dict(dim=[1, 3, 1, spixels]))
    n.cells = L.Input(shape=dict(dim=list(cells_shape)))
    slic = dict(num_steps=num_steps) if num_steps is not None else {}
    n.labels = L.SlicIterations(n.feat, n.spix, n.cells, slic_iterations_param=slic,
                                spixel_feature2_param=dict(num_spixels_h=2, num_spixels_w=3,
                                                           scale_value=-1), **layer)
    return n.to_proto()


def test_slic_iterations_checks_its_parameters_and_shapes():
    assert infer_shapes(slic_net())["labels"] == (1, 1, 5, 7)
    with pytest.raises(NetCheckError, match="slic_iterations_param.num_steps is required"):
        CheckedNet(slic_net(num_steps=None))
    with pytest.raises(NetCheckError, match="num_steps must be at least 1, got 0"):
        CheckedNet(slic_net(num_steps=0))
    with pytest.raises(NetCheckError, match=r"SlicIterations layer 'labels': initial superpixel "
                                            r"features .* 1 x 3 x 1 x 6 .* got 1 x 3 x 1 x 5"):
        CheckedNet(slic_net(spixels=5))
    with pytest.raises(NetCheckError, match="the cell map"):
        CheckedNet(slic_net(cells_shape=(1, 1, 5, 6)))
    net_param = slic_net()
    net_param.layer[-1].spixel_feature2_param.ClearField("num_spixels_w")
    with pytest.raises(NetCheckError, match="num_spixels_h and num_spixels_w are required"):
        CheckedNet(net_param)
    with pytest.raises(NetCheckError, match=r"takes 1 or 3 top blobs, got 4"):
        n = caffe.NetSpec()
        n.f, n.s, n.c = (L.Input(shape=dict(dim=d)) for d in
                         ([1, 3, 5, 7], [1, 3, 1, 6], [1, 1, 5, 7]))
        n.a, n.b, n.c2, n.d = L.SlicIterations(
            n.f, n.s, n.c, ntop=4, slic_iterations_param=dict(num_steps=1),
            spixel_feature2_param=dict(num_spixels_h=2, num_spixels_w=3))
        CheckedNet(n.to_proto())


def test_slic_iterations_tops_and_cells_at_forward():
    n = caffe.NetSpec()
    n.feat = L.Input(shape=dict(dim=[2, 4, 9, 8]))
    n.spix = L.Input(shape=dict(dim=[2, 4, 1, 6]))
    n.cells = L.Input(shape=dict(dim=[2, 1, 9, 8]))
    n.labels, n.centres, n.assoc = L.SlicIterations(
        n.feat, n.spix, n.cells, ntop=3, slic_iterations_param=dict(num_steps=2),
        spixel_feature2_param=dict(num_spixels_h=2, num_spixels_w=3))
    shapes = infer_shapes(n.to_proto())
    assert (shapes["labels"], shapes["centres"], shapes["assoc"]) == (
        (2, 1, 9, 8), (2, 4, 1, 6), (2, 9, 9, 8))
    net = CheckedNet(n.to_proto())
    cells = np.zeros((2, 1, 9, 8))
    cells[1, 0, 8, 7] = 6
    with pytest.raises(NetCheckError, match=r"SlicIterations layer 'labels': initial cells in "
                                            r"'cells': 1 value\(s\) outside \[0, 6\)"):
        net.forward(feat=np.zeros((2, 4, 9, 8)), spix=np.zeros((2, 4, 1, 6)), cells=cells)


def test_slic_iterations_refuses_any_gradient():
    with pytest.raises(NetCheckError, match="has no backward .* propagate_down must be false"):
        CheckedNet(slic_net(propagate_down=[True, False, False]))
    forced = slic_net()
    forced.force_backward = True
    with pytest.raises(NetCheckError, match="cannot set force_backward; train with the "
                                            "decomposed"):
        CheckedNet(forced)
    # A loss downstream: Caffe would call the backward, unless propagate_down is all false.
    n = caffe.NetSpec()
    n.feat = L.Input(shape=dict(dim=[1, 3, 5, 7]))
    n.spix = L.Input(shape=dict(dim=[1, 3, 1, 6]))
    n.cells = L.Input(shape=dict(dim=[1, 1, 5, 7]))
    n.target = L.Input(shape=dict(dim=[1, 1, 5, 7]))
    n.conv = L.Convolution(n.feat, num_output=3, kernel_size=1)
    grid = dict(num_spixels_h=2, num_spixels_w=3, scale_value=-1)
    n.labels = L.SlicIterations(n.conv, n.spix, n.cells, spixel_feature2_param=grid,
                                slic_iterations_param=dict(num_steps=2))
    n.scaled = L.Power(n.labels, power_param=dict(scale=2))
    n.loss = L.EuclideanLoss(n.scaled, n.target)
    with pytest.raises(NetCheckError, match="the loss layer 'loss' depends on it"):
        CheckedNet(n.to_proto(), caffe.TRAIN)
    net_param = n.to_proto()
    net_param.layer[5].propagate_down.extend([False, False, False])
    assert net_param.layer[5].type == "SlicIterations"
    net = CheckedNet(net_param, caffe.TRAIN)
    net.forward(feat=np.ones((1, 3, 5, 7)), spix=np.ones((1, 3, 1, 6)),
                cells=np.zeros((1, 1, 5, 7)), target=np.zeros((1, 1, 5, 7)))
    net.net.backward()  # Caffe never asks the layer for a gradient


@pytest.mark.slow
def test_caffe_aborts_without_num_steps_with_our_message(tmp_path):
    """Without the Python checks, the layer's own CHECK fires."""
    prototxt = tmp_path / "bad.prototxt"
    prototxt.write_text(str(slic_net(num_steps=None)))
    script = f"import caffe\ncaffe.Net({str(prototxt)!r}, caffe.TEST)\n"
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode != 0
    assert "slic_iterations_param.num_steps is required" in result.stderr


def test_a_read_only_input_held_unchanged_is_not_checked_or_copied_again(monkeypatch):
    """Cached nets get the same read-only cell map on every call: the blob still holds
    it, so it is skipped; an array that changed, a writable one, or a blob that was
    written to since are checked and copied again."""
    import ssn.nets.checked as checked
    checked_names = []
    check = checked.check_index_inputs
    monkeypatch.setattr(checked, "check_index_inputs", lambda net_param, arrays, *rest: (
        checked_names.append(sorted(arrays)), check(net_param, arrays, *rest))[-1])
    net = CheckedNet(passoc_net())
    cells = np.zeros((1, 1, 5, 7), np.float32)
    cells[0, 0, :, 4:] = 1
    cells.flags.writeable = False
    feat, spix = np.ones((1, 3, 5, 7)), np.zeros((1, 3, 1, 6))
    first = net.forward(feat=feat, spix=spix, cells=cells)["dist"]
    net.forward(feat=feat, spix=spix, cells=cells)
    assert checked_names == [["cells", "feat", "spix"], ["feat", "spix"]]
    net.net.blobs["cells"].data[0, 0, 0, 0] = 5  # written behind its back: set again
    np.testing.assert_array_equal(net.forward(feat=feat, spix=spix, cells=cells)["dist"], first)
    assert checked_names[-1] == ["cells", "feat", "spix"]
    bad = cells.copy()
    bad[0, 0, 0, 0] = 6
    bad.flags.writeable = False
    with pytest.raises(NetCheckError, match="outside"):
        net.forward(feat=feat, spix=spix, cells=bad)
    writable = cells.copy()
    net.forward(feat=feat, spix=spix, cells=writable)
    net.forward(feat=feat, spix=spix, cells=writable)
    assert checked_names[-2:] == [["cells", "feat", "spix"]] * 2
