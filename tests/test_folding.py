"""BatchNorm and ReLU folded into the Convolution before them (ssn.nets.folding, patch
0015's convolution_output_param.relu)."""
import caffe
import numpy as np
import pytest
from caffe import layers as L
from skimage import data

from ssn import inference
from ssn.color import rgb_to_lab
from ssn.grid import grid_shape, init_cells
from ssn.nets.checked import CheckedNet
from ssn.nets.checks import NetCheckError
from ssn.nets.folding import without_relu
from ssn.nets.generators import (
    DEEP_FEATURE_DIM,
    FEATURES,
    SSNConfig,
    deploy_net,
    position_scale,
)


def conv_bn_net(bias=True, global_stats=None, second_reader=False):
    """data (2 x 3 x 9 x 11) -> conv (4, 3x3) -> BatchNorm -> ReLU, optionally with
    another layer reading the convolution's output."""
    net = caffe.NetSpec()
    net.data = L.Input(shape=dict(dim=[2, 3, 9, 11]))
    net.conv = L.Convolution(net.data, num_output=4, kernel_size=3, pad=1, bias_term=bias)
    norm = {} if global_stats is None else dict(batch_norm_param=dict(
        use_global_stats=global_stats))
    net.norm = L.BatchNorm(net.conv, **norm)
    net.relu = L.ReLU(net.norm, in_place=True)
    if second_reader:
        net.also = L.Power(net.conv, power_param=dict(scale=2.0))
    return net.to_proto()


def random_model(net_param, path, rng):
    net = CheckedNet(net_param, caffe.TEST).net
    for blobs in net.params.values():
        for blob in blobs:
            blob.data[...] = rng.normal(size=blob.data.shape)
    mean, var, factor = net.params["norm"]
    var.data[...] = rng.uniform(0.5, 4.0, var.data.shape)
    factor.data[...] = 2.5  # Caffe divides the stored moments by this factor
    net.save(str(path))
    return path


def layer_types(checked):
    return [layer.type for layer in checked.net_param.layer]


def test_a_folded_convolution_gives_the_unfolded_output(tmp_path):
    rng = np.random.default_rng(0)
    param = conv_bn_net()
    weights = random_model(param, tmp_path / "m.caffemodel", rng)
    x = rng.normal(size=(2, 3, 9, 11))
    plain = CheckedNet(param, caffe.TEST, weights=weights)
    folded = CheckedNet(param, caffe.TEST, weights=weights, fold_batch_norm=True)
    assert "BatchNorm" in layer_types(plain) and "BatchNorm" not in layer_types(folded)
    expected = plain.forward(data=x)["norm"]
    # An independent check of Caffe's BatchNorm too: (x - m / s) / sqrt(v / s + eps).
    conv = plain.net.blobs["conv"].data
    mean, var, factor = (blob.data for blob in plain.net.params["norm"])
    normalised = ((conv - (mean / factor[0])[:, None, None])
                  / np.sqrt(var / factor[0] + 1e-5)[:, None, None])
    np.testing.assert_allclose(expected, np.maximum(normalised, 0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(folded.forward(data=x)["norm"], expected, rtol=1e-4, atol=1e-5)
    assert expected.min() == 0 and expected.max() > 0  # the ReLU acted


@pytest.mark.parametrize("kwargs", [dict(bias=False), dict(global_stats=False),
                                    dict(second_reader=True)])
def test_batch_norms_that_cannot_fold_stay(tmp_path, kwargs):
    param = conv_bn_net(**kwargs)
    weights = random_model(param, tmp_path / "m.caffemodel", np.random.default_rng(1))
    folded = CheckedNet(param, caffe.TEST, weights=weights, fold_batch_norm=True)
    assert "BatchNorm" in layer_types(folded)


def test_nothing_folds_without_weights_or_in_training():
    param = conv_bn_net()
    assert "BatchNorm" in layer_types(CheckedNet(param, caffe.TEST, fold_batch_norm=True))
    assert "BatchNorm" in layer_types(CheckedNet(param, caffe.TRAIN, fold_batch_norm=True))


def test_the_shipped_model_folds_with_the_same_features_and_labels():
    """The deploy nets of superpixels() fold all six of the feature CNN's BatchNorms."""
    height, width, n_spixels = 129, 161, 60
    config = SSNConfig(height=height, width=width, grid_request=n_spixels, num_steps=10,
                       feature_dim=DEEP_FEATURE_DIM,
                       pos_scale=position_scale(n_spixels, height, width))
    weights = str(inference.BUNDLED_WEIGHTS)
    plain = CheckedNet(deploy_net(config), caffe.TEST, weights=weights)
    folded = inference.deploy_net_for.__wrapped__(height, width, n_spixels, 10, "deep", weights)
    assert layer_types(plain).count("BatchNorm") == 6
    assert layer_types(plain).count("ReLU") == 7
    assert "BatchNorm" not in layer_types(folded) and "ReLU" not in layer_types(folded)
    cells = init_cells(height, width, *grid_shape(n_spixels, height, width))[None, None]
    lab = rgb_to_lab(data.astronaut()[100:100 + height, 150:150 + width]).transpose(2, 0, 1)
    inputs = dict(img=lab[None], spixel_init=cells, feat_spixel_init=cells)
    outputs = [net.forward(outputs=[FEATURES, "new_spix_indices"], **inputs)
               for net in (plain, folded)]
    features = outputs[0][FEATURES]
    np.testing.assert_allclose(outputs[1][FEATURES], features,
                               atol=1e-4 * np.abs(features).max())
    assert np.mean(outputs[1]["new_spix_indices"] == outputs[0]["new_spix_indices"]) > 0.999


def conv_relu_net(shape, num_output, kernel, stride=1, bias=True, relu_output=False,
                  in_place=True, slope=0.0, reader_between=False, power_between=False):
    """data -> conv -> ReLU (or a conv with convolution_output_param.relu); optionally
    a layer reading the convolution's output before the ReLU, or one rewriting it in
    place."""
    net = caffe.NetSpec()
    net.data = L.Input(shape=dict(dim=list(shape)))
    extra = dict(convolution_output_param=dict(relu=True)) if relu_output else {}
    net.conv = L.Convolution(net.data, num_output=num_output, kernel_size=kernel,
                             pad=kernel // 2, stride=stride, bias_term=bias,
                             weight_filler=dict(type="gaussian", std=0.3),
                             bias_filler=dict(type="gaussian", std=0.3), **extra)
    if reader_between:
        net.before = L.Power(net.conv, power_param=dict(scale=2.0))
    if power_between:
        net.power = L.Power(net.conv, power_param=dict(scale=2.0), in_place=True)
    if not relu_output:
        net.relu = L.ReLU(net.conv, in_place=in_place, relu_param=dict(negative_slope=slope))
    return net.to_proto()


# (input shape, outputs, kernel, stride, bias): the convolution's strategies -
# Winograd (3x3, >= 8 inputs, >= 1024 outputs), shifted inputs and products,
# im2col (1x1, strided), with and without a bias.
RELU_CASES = [((2, 3, 9, 11), 4, 3, 1, True), ((2, 8, 40, 37), 8, 3, 1, True),
              ((1, 5, 33, 35), 64, 3, 1, False), ((2, 64, 12, 13), 15, 3, 1, True),
              ((2, 4, 17, 19), 6, 1, 1, True), ((2, 4, 17, 19), 6, 3, 2, False)]


@pytest.mark.parametrize("shape, num_output, kernel, stride, bias", RELU_CASES)
def test_a_relu_convolution_equals_the_convolution_then_relu(shape, num_output, kernel,
                                                             stride, bias):
    rng = np.random.default_rng(2)
    plain = CheckedNet(conv_relu_net(shape, num_output, kernel, stride, bias), caffe.TEST)
    fused = CheckedNet(conv_relu_net(shape, num_output, kernel, stride, bias,
                                     relu_output=True), caffe.TEST)
    for name, blobs in plain.net.params.items():
        for blob, other in zip(blobs, fused.net.params[name]):
            other.data[...] = blob.data
    x = rng.normal(size=shape)
    expected = plain.forward(data=x)["conv"]
    np.testing.assert_array_equal(fused.forward(data=x)["conv"], expected)
    assert (expected == 0).mean() > 0.2 and expected.min() == 0 and expected.max() > 0


def test_in_place_relus_fold_into_their_convolution():
    shape = (1, 3, 9, 11)
    folded, names = without_relu(conv_relu_net(shape, 4, 3))
    assert names == ["relu"] and [layer.type for layer in folded.layer] == ["Input",
                                                                          "Convolution"]
    assert folded.layer[1].convolution_output_param.relu
    checked = CheckedNet(conv_relu_net(shape, 4, 3), caffe.TEST, fold_relu=True)
    assert "ReLU" not in layer_types(checked)


@pytest.mark.parametrize("kwargs", [dict(in_place=False), dict(slope=0.1),
                                    dict(power_between=True)])
def test_relus_that_cannot_fold_stay(kwargs):
    param = conv_relu_net((1, 3, 9, 11), 4, 3, **kwargs)
    assert without_relu(param)[1] == []
    assert "ReLU" in layer_types(CheckedNet(param, caffe.TEST, fold_relu=True))


def test_a_relu_after_another_reader_stays():
    """(Caffe itself refuses to build this net: checked on the parameters alone.)"""
    assert without_relu(conv_relu_net((1, 3, 9, 11), 4, 3, reader_between=True))[1] == []


def test_relus_do_not_fold_in_training():
    param = conv_relu_net((1, 3, 9, 11), 4, 3)
    assert "ReLU" in layer_types(CheckedNet(param, caffe.TRAIN, fold_relu=True))


def test_a_relu_convolution_refuses_a_backward():
    param = conv_relu_net((1, 3, 9, 11), 4, 3, relu_output=True)
    forced = caffe.proto.caffe_pb2.NetParameter()
    forced.CopyFrom(param)
    forced.force_backward = True
    with pytest.raises(NetCheckError, match="convolution_output_param.relu.*force_backward"):
        CheckedNet(forced, caffe.TEST)
    net = caffe.NetSpec()
    net.data = L.Input(shape=dict(dim=[1, 3, 9, 11]))
    net.target = L.Input(shape=dict(dim=[1, 4, 9, 11]))
    net.conv = L.Convolution(net.data, num_output=4, kernel_size=3, pad=1,
                             convolution_output_param=dict(relu=True))
    net.loss = L.EuclideanLoss(net.conv, net.target)
    with pytest.raises(NetCheckError, match="loss layer 'loss' depends on it"):
        CheckedNet(net.to_proto(), caffe.TRAIN)


def test_convolution_output_param_belongs_to_convolutions():
    net = caffe.NetSpec()
    net.data = L.Input(shape=dict(dim=[1, 3, 9, 11]))
    net.pool = L.Pooling(net.data, kernel_size=2, convolution_output_param=dict(relu=True))
    with pytest.raises(NetCheckError, match="Convolution layers only"):
        CheckedNet(net.to_proto(), caffe.TEST)
