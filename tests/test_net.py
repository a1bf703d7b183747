"""A NetSpec net of SSN layers (two differentiable SLIC iterations and the final
assignment) against the composed NumPy reference, forward and backward, and the
same built net reshaped to a second image size."""
import caffe
import numpy as np
import pytest
from caffe import layers as L
from caffe import params as P

from ssn.nets.checked import CheckedNet
from ssn.nets.checks import NetCheckError
from ssn.reference import grid, passoc, pixel_feature, rel_to_abs_index, spixel_feature
from ssn.reference import spixel_feature2 as spixel_feature2_ref

GRID = (3, 4)
POS_SCALE, COLOR_SCALE = 0.5, 0.26



def mini_ssn(height, width):
    """image -> features -> S0 -> Passoc/Softmax -> SpixelFeature2 -> Passoc/Softmax
    -> labels, with a EuclideanLoss of the final associations against a target."""
    grid_h, grid_w = GRID
    n = caffe.NetSpec()
    n.img = L.Input(shape=dict(dim=[2, 3, height, width]))
    n.cells = L.Input(shape=dict(dim=[2, 1, height, width]))
    n.target = L.Input(shape=dict(dim=[2, 9, height, width]))
    # A zero scalar bias makes img0 a blob that needs backward (an Input does not).
    n.img0 = L.Bias(n.img, bias_param=dict(num_axes=0))
    n.feat = L.PixelFeature(n.img0, pixel_feature_param=dict(
        type=P.PixelFeature.POSITION_AND_RGB, pos_scale=POS_SCALE, color_scale=COLOR_SCALE))
    n.s0 = L.SpixelFeature(n.feat, n.cells, propagate_down=[True, False],
                           spixel_feature_param=dict(type=P.SpixelFeature.AVGRGB,
                                                     max_spixels=grid_h * grid_w,
                                                     ignore_idx_value=-10,
                                                     ignore_feature_value=255))
    grid_param = dict(num_spixels_h=grid_h, num_spixels_w=grid_w, scale_value=-1)
    n.a1 = L.Passoc(n.feat, n.s0, n.cells, spixel_feature2_param=grid_param,
                    propagate_down=[True, True, False])
    n.q1 = L.Softmax(n.a1)
    n.s1 = L.SpixelFeature2(n.feat, n.q1, n.cells, spixel_feature2_param=grid_param,
                            propagate_down=[True, True, False])
    n.a2 = L.Passoc(n.feat, n.s1, n.cells, spixel_feature2_param=grid_param,
                    propagate_down=[True, True, False])
    n.q2 = L.Softmax(n.a2)
    n.rel = L.ArgMax(n.q2, argmax_param=dict(axis=1), propagate_down=[False])
    n.labels = L.RelToAbsIndex(n.rel, n.cells, propagate_down=[False, False],
                               rel_to_abs_index_param=dict(num_spixels_h=grid_h,
                                                           num_spixels_w=grid_w))
    n.loss = L.EuclideanLoss(n.q2, n.target)
    return n.to_proto()


def softmax(a):
    e = np.exp(a - a.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def softmax_backward(q, dq):
    return q * (dq - (dq * q).sum(axis=1, keepdims=True))


def reference(img, cells, target):
    """Forward and the image gradient of the mini net, composed from the reference."""
    grid_h, grid_w = GRID
    feat = pixel_feature.forward(img, "POSITION_AND_RGB", POS_SCALE, COLOR_SCALE)
    kw = dict(mode="AVGRGB", ignore_idx_value=-10.0, ignore_feature_value=255.0)
    s0, _ = spixel_feature.forward(feat, cells, grid_h * grid_w, **kw)
    a1 = passoc.forward(feat, s0, cells, grid_h, grid_w, -1.0)
    q1 = softmax(a1)
    s1 = spixel_feature2_ref.forward(feat, q1, cells, grid_h, grid_w)
    a2 = passoc.forward(feat, s1, cells, grid_h, grid_w, -1.0)
    q2 = softmax(a2)
    labels = rel_to_abs_index.forward(q2.argmax(axis=1)[:, None].astype(float), cells,
                                      grid_h, grid_w)
    loss = ((q2 - target) ** 2).sum() / (2 * img.shape[0])

    d_q2 = (q2 - target) / img.shape[0]
    d_a2 = softmax_backward(q2, d_q2)
    d_feat, d_s1 = passoc.backward(feat, s1, cells, grid_h, grid_w, d_a2, -1.0)
    d_feat_sf2, d_q1 = spixel_feature2_ref.backward(feat, q1, cells, grid_h, grid_w, d_s1)
    d_a1 = softmax_backward(q1, d_q1)
    d_feat_a1, d_s0 = passoc.backward(feat, s0, cells, grid_h, grid_w, d_a1, -1.0)
    d_feat_s0 = spixel_feature.backward(feat, cells, grid_h * grid_w, d_s0, None, **kw)
    d_feat = d_feat + d_feat_sf2 + d_feat_a1 + d_feat_s0
    d_img = pixel_feature.backward(img, d_feat, "POSITION_AND_RGB", COLOR_SCALE)
    return labels, q2, loss, d_img


def inputs_for(rng, height, width):
    cells = grid.init_cells(height, width, *GRID).astype(float)
    return dict(img=rng.normal(size=(2, 3, height, width)) * 20,
                cells=np.broadcast_to(cells, (2, 1, height, width)).copy(),
                target=rng.uniform(size=(2, 9, height, width)))


def check_against_reference(net, inputs):
    out = net.forward(outputs=["labels", "q2", "loss"], **inputs)
    net.net.backward()
    labels, q2, loss, d_img = reference(inputs["img"], inputs["cells"], inputs["target"])
    np.testing.assert_allclose(out["q2"], q2, atol=2e-5)
    np.testing.assert_array_equal(out["labels"], labels)
    np.testing.assert_allclose(float(out["loss"]), loss, rtol=1e-4)
    got = net.net.blobs["img0"].diff
    np.testing.assert_allclose(got, d_img, rtol=1e-3, atol=1e-3 * np.abs(d_img).max())
    assert np.abs(got).max() > 0


def test_mini_ssn_matches_reference_and_reshapes():
    rng = np.random.default_rng(11)
    net = CheckedNet(mini_ssn(9, 13), caffe.TRAIN)
    check_against_reference(net, inputs_for(rng, 9, 13))
    # The same built net at a second image size (the layers reshape from bottoms).
    check_against_reference(net, inputs_for(rng, 14, 10))
    assert net.net.blobs["labels"].data.shape == (2, 1, 14, 10)


def conv_net(channels):
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 2, 5, 5]))
    n.conv = L.Convolution(n.data, num_output=channels, kernel_size=3)
    return n.to_proto()


def test_weights_must_cover_the_net_with_matching_shapes(tmp_path):
    source = CheckedNet(conv_net(4))
    source.net.params["conv"][0].data[...] = 0.5
    source.net.save(str(tmp_path / "four.caffemodel"))
    loaded = CheckedNet(conv_net(4), weights=tmp_path / "four.caffemodel")
    assert np.all(loaded.net.params["conv"][0].data == 0.5)
    with pytest.raises(NetCheckError, match="layer conv has weights of shapes"):
        CheckedNet(conv_net(3), weights=tmp_path / "four.caffemodel")
    empty = caffe.NetSpec()
    empty.data = L.Input(shape=dict(dim=[1, 2, 5, 5]))
    empty.out = L.ReLU(empty.data)
    CheckedNet(empty.to_proto()).net.save(str(tmp_path / "none.caffemodel"))
    with pytest.raises(NetCheckError, match="no weights for layers conv"):
        CheckedNet(conv_net(4), weights=tmp_path / "none.caffemodel")
    (tmp_path / "junk.caffemodel").write_bytes(b"\xff" * 64)
    with pytest.raises(NetCheckError, match="not a Caffe model"):
        CheckedNet(conv_net(4), weights=tmp_path / "junk.caffemodel")
