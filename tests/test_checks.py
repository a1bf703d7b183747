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
