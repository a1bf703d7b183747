"""The feature CNN without Crop and without the 197-channel Concat (SSNConfig.fused_cnn).

Interp with a reference bottom against Interp + Crop and the float64 oracle;
ConcatConvolution against ssn.reference.concat_convolution and the net checks'
refusals; the shipped model in train and deploy nets of either layout; and a few
Adam steps in either layout, which must stay together.
"""
import caffe
import numpy as np
import pytest
from caffe import layers as L
from skimage import data, transform

from ssn.color import rgb_to_lab
from ssn.grid import init_cells
from ssn.inference import bundled_weights
from ssn.nets.checked import CheckedNet, single_layer_net
from ssn.nets.checks import NetCheckError
from ssn.nets.generators import SSNConfig, deploy_net, feature_net, train_net
from ssn.nets.prototxt import PrototxtOptions, solver
from ssn.nets.weights import initialize_helper_weights, inputs_for_data_layers
from ssn.reference import concat_convolution, interp
from ssn.tiling import receptive_field
from ssn.training.samples import BSDSSampler
from ssn.training.solver import make_solver

DATA_TOPS = ("img", "spixel_init", "feat_spixel_init", "label", "problabel")
# The two layouts compute the same sums in other orders; BatchNorm's backward and Adam
# magnify the rounding. Measured from the shipped model on batch 6 at 201x201
# (docs/LAYERS.md): losses within 1.8e-6 relative, the convolution weights' first
# gradients within 3.7e-4 of each blob's largest, the weights after three Adam steps
# (lr 1e-4, so at most 3e-4 from the start) within 4.6e-5. The same net with
# Winograd off against on (rounding alone) gave 5.6e-7, 1.9e-4 and 4.7e-5.
STEP_LOSS_RTOL = 2e-5
GRADIENT_TOL = 2e-3     # of the blob's largest gradient
STEP_WEIGHT_ATOL = 1e-4
STEP_WEIGHT_RTOL = 1e-5  # of the blob's largest value (BatchNorm's statistics)

def assert_close(actual, expected, rtol=1e-4, atol=1e-4):
    """float32 Caffe against float64 NumPy, scaled to the values' size."""
    expected = np.asarray(expected)
    scale = max(1.0, float(np.abs(expected).max()))
    np.testing.assert_allclose(actual, expected, rtol=rtol, atol=atol * scale)


# Interp with a reference ---------------------------------------------------------------

def interp_then_crop(x_shape, reference_shape, zoom):
    spec = caffe.NetSpec()
    spec.bottom0 = L.Input(shape=dict(dim=list(x_shape)))
    spec.bottom1 = L.Input(shape=dict(dim=list(reference_shape)))
    spec.full = L.Interp(spec.bottom0, interp_param=dict(zoom_factor=zoom))
    spec.top0 = L.Crop(spec.full, spec.bottom1, crop_param=dict(axis=2),
                       propagate_down=[True, False])
    param = spec.to_proto()
    param.force_backward = True
    return CheckedNet(param)


@pytest.mark.slow
@pytest.mark.parametrize("num", [1, 3])
@pytest.mark.parametrize("size, zoom, crop", [
    ((7, 9), 2, (13, 17)),      # odd input, the whole zoomed size
    ((7, 9), 2, (12, 16)),      # even crop
    ((6, 8), 4, (21, 26)),      # even input, an odd and an even crop
    ((51, 51), 4, (201, 201)),  # Interp2 of the CNN at 201x201
    ((51, 51), 4, (198, 200)),  # and at 198x200 (also pooled to 51x51)
    ((5, 4), 3, (1, 1)),
])
def test_interp_with_a_reference_is_interp_then_crop(num, size, zoom, crop):
    rng = np.random.default_rng(20)
    x = rng.normal(size=(num, 3) + size)
    reference = np.zeros((num, 2) + crop)
    fused = single_layer_net("Interp", [x.shape, reference.shape],
                             interp_param=dict(zoom_factor=zoom))
    cropped = interp_then_crop(x.shape, reference.shape, zoom)
    top_diff = rng.normal(size=(num, 3) + crop)
    results = []
    for net in (fused, cropped):
        top = net.forward(bottom0=x, bottom1=reference)["top0"]
        diffs = net.backward({"top0": top_diff}, ["bottom0", "bottom1"])
        results.append((top, diffs["bottom0"], diffs["bottom1"]))
    (top, diff, reference_diff), (crop_top, crop_diff, _) = results
    assert top.shape == (num, 3) + crop
    np.testing.assert_array_equal(top, crop_top)
    np.testing.assert_array_equal(diff, crop_diff)
    assert not reference_diff.any()
    assert_close(top, interp.forward(x, zoom_factor=zoom)[:, :, :crop[0], :crop[1]])
    padded = np.zeros((num, 3) + interp.output_shape(*size, zoom_factor=zoom))
    padded[:, :, :crop[0], :crop[1]] = top_diff
    assert_close(diff, interp.backward(x, padded, zoom_factor=zoom))


def test_a_reference_larger_than_the_zoomed_size_is_refused():
    with pytest.raises(NetCheckError, match=r"reference 'bottom1' \(1 x 1 x 14 x 17\) is "
                                            r"larger than the interpolated 13 x 17"):
        single_layer_net("Interp", [(1, 3, 7, 9), (1, 1, 14, 17)],
                         interp_param=dict(zoom_factor=2))
    net = single_layer_net("Interp", [(1, 3, 7, 9), (1, 1, 13, 17)],
                           interp_param=dict(zoom_factor=2))
    with pytest.raises(NetCheckError, match="larger than the interpolated 13 x 17"):
        net.set_inputs(dict(bottom1=np.zeros((1, 1, 13, 18))))


# ConcatConvolution -----------------------------------------------------------------------

def concat_convolution_net(shapes, num_output, pad=1, stride=1, **params):
    return single_layer_net("ConcatConvolution", shapes, convolution_param=dict(
        num_output=num_output, kernel_size=3, pad=pad, stride=stride, **params))


@pytest.mark.parametrize("num, channels, size, pad, stride", [
    (1, (5, 64, 64, 64), (13, 11), 1, 1),  # the CNN's four bottoms, odd size
    (3, (2, 1, 7), (6, 9), 1, 1),
    (2, (3, 4), (9, 10), 0, 2),
    (2, (16,), (40, 33), 1, 1),            # one bottom: a Convolution (Winograd-sized)
    (1, (5, 64), (41, 37), 1, 1),          # Winograd for the 64-channel part
])
def test_concat_convolution_matches_the_reference(num, channels, size, pad, stride):
    rng = np.random.default_rng(21)
    bottoms = [rng.normal(size=(num, c) + size) for c in channels]
    net = concat_convolution_net([b.shape for b in bottoms], 15, pad, stride)
    weights, bias = net.net.params["top0"]
    assert weights.data.shape == (15, sum(channels), 3, 3) and bias.data.shape == (15,)
    weights.data[...] = rng.normal(size=weights.data.shape) * 0.1
    bias.data[...] = rng.normal(size=15)
    expected = concat_convolution.forward(bottoms, weights.data, bias.data, (pad, pad),
                                          (stride, stride))
    top = net.forward(**{f"bottom{i}": b for i, b in enumerate(bottoms)})["top0"]
    assert_close(top, expected)
    top_diff = rng.normal(size=expected.shape)
    net.net.clear_param_diffs()
    diffs = net.backward({"top0": top_diff}, [f"bottom{i}" for i in range(len(bottoms))])
    d_bottoms, d_weights, d_bias = concat_convolution.backward(
        bottoms, weights.data, top_diff, (pad, pad), (stride, stride))
    for index, expected_diff in enumerate(d_bottoms):
        assert_close(diffs[f"bottom{index}"], expected_diff)
        assert np.abs(expected_diff).max() > 0
    assert_close(weights.diff, d_weights)
    assert_close(bias.diff, d_bias)


def test_concat_convolution_shapes_are_checked():
    with pytest.raises(NetCheckError, match="agree on every axis but the channel axis 1"):
        concat_convolution_net([(1, 3, 7, 9), (1, 2, 7, 8)], 4)
    with pytest.raises(NetCheckError, match="group must be 1"):
        concat_convolution_net([(1, 4, 7, 9), (1, 2, 7, 9)], 4, group=2)
    with pytest.raises(NetCheckError, match="kernel .* is larger than the padded input"):
        concat_convolution_net([(1, 4, 2, 9), (1, 2, 2, 9)], 4, pad=0)
    net = concat_convolution_net([(1, 3, 7, 9), (1, 2, 7, 9)], 4)
    with pytest.raises(NetCheckError, match="bottom 1 'bottom1' has 5 channels, but the "
                                            r"layer was set up \(and its weights shaped\) "
                                            "for 2"):
        net.set_inputs(dict(bottom1=np.zeros((1, 5, 7, 9))))
    net.set_inputs(dict(bottom0=np.zeros((2, 3, 11, 4)), bottom1=np.zeros((2, 2, 11, 4))))
    assert net.net.blobs["top0"].data.shape == (2, 4, 11, 4)


def test_a_relu_concat_convolution_is_for_inference():
    spec = caffe.NetSpec()
    spec.first = L.Input(shape=dict(dim=[1, 3, 9, 11]))
    spec.second = L.Input(shape=dict(dim=[1, 2, 9, 11]))
    spec.target = L.Input(shape=dict(dim=[1, 4, 9, 11]))
    spec.conv = L.ConcatConvolution(spec.first, spec.second,
                                    convolution_param=dict(num_output=4, kernel_size=3, pad=1),
                                    convolution_output_param=dict(relu=True))
    spec.loss = L.EuclideanLoss(spec.conv, spec.target)
    with pytest.raises(NetCheckError, match="ConcatConvolution layer 'conv': has "
                                            "convolution_output_param.relu.*'loss' depends"):
        CheckedNet(spec.to_proto(), caffe.TRAIN)


def test_the_cnn_layouts_differ_only_where_meant():
    """The fused CNN has no Crop or Concat1, the same learned blobs, the same reach."""
    fused, original = (feature_net(64, 64, 20, fused_cnn=flag) for flag in (True, False))
    types = {flag: [layer.type for layer in net.layer]
             for flag, net in ((True, fused), (False, original))}
    assert "Crop" not in types[True] and types[True].count("Concat") == 1
    assert types[False].count("Crop") == 2 and types[False].count("Concat") == 2
    assert receptive_field(fused) == receptive_field(original) == (22, 4)
    nets = [CheckedNet(net, caffe.TEST) for net in (fused, original)]
    shapes = [{name: [blob.data.shape for blob in blobs] for name, blobs in net.net.params.items()}
              for net in nets]
    assert shapes[0] == shapes[1]
    assert shapes[0]["Convolution7"] == [(15, 197, 3, 3), (15,)]


# The shipped model in both layouts -------------------------------------------------------

@pytest.fixture(scope="module")
def lab_image():
    """A 3 x 130 x 157 Lab image: Interp's zoomed rows (131) are cropped, its columns not."""
    rgb = transform.resize(data.astronaut(), (130, 157), anti_aliasing=True)
    return rgb_to_lab((rgb * 255).astype(np.uint8)).transpose(2, 0, 1).astype(np.float32)


@pytest.mark.parametrize("fold", [False, True], ids=["plain", "folded"])
def test_the_shipped_model_gives_the_same_features_in_both_deploy_layouts(lab_image, fold):
    weights = str(bundled_weights())
    _, height, width = lab_image.shape
    features, labels = [], []
    for fused_cnn in (True, False):
        config = SSNConfig(height=height, width=width, grid_request=63, num_steps=10,
                           fused_cnn=fused_cnn)
        cells = init_cells(height, width, *config.grid)[None, None].astype(np.float32)
        net = CheckedNet(deploy_net(config), caffe.TEST, weights=weights,
                         fold_batch_norm=fold, fold_relu=fold)
        conv7 = next(layer for layer in net.net_param.layer if layer.name == "Convolution7")
        assert conv7.type == ("ConcatConvolution" if fused_cnn else "Convolution")
        assert conv7.convolution_output_param.relu == fold
        out = net.forward(["trans_features", "new_spix_indices"], img=lab_image[None],
                          spixel_init=cells, feat_spixel_init=cells)
        features.append(out["trans_features"])
        labels.append(out["new_spix_indices"])
    scale = np.abs(features[1]).max()
    assert np.abs(features[0] - features[1]).max() <= 1e-5 * scale
    assert np.abs(features[1][:, 5:]).max() > 0
    # Labels may only differ where two candidate superpixels are within rounding.
    assert np.mean(labels[0] != labels[1]) < 1e-3


def train_batch(config, index):
    sampler = BSDSSampler("train", (config.height, config.width), config.grid,
                          config.batch_size, config.num_label_channels)
    return dict(zip(DATA_TOPS, sampler.batch(index).tops()))


def train_solver(config, shapes, weights):
    """An Adam solver (the generated one's settings) on the train net with Input layers."""
    param = solver(PrototxtOptions(), "unused")
    param.net_param.CopyFrom(inputs_for_data_layers(train_net(config), caffe.TRAIN, shapes))
    param.ClearField("net")
    del param.test_iter[:]
    param.ClearField("test_interval")
    trainer = make_solver(param, "unused")
    trainer.net.copy_from(weights)
    initialize_helper_weights(trainer.net)
    return trainer


@pytest.mark.slow
def test_the_shipped_model_trains_alike_in_both_layouts(sample_root):
    """The first gradients, then the losses and weights of three Adam steps."""
    weights = str(bundled_weights())
    results = {}
    for fused_cnn in (True, False):
        config = SSNConfig(height=58, width=61, grid_request=30, batch_size=2,
                           fused_cnn=fused_cnn)
        batches = [train_batch(config, index) for index in range(3)]
        trainer = train_solver(config, {k: v.shape for k, v in batches[0].items()}, weights)
        for name, value in batches[0].items():
            trainer.net.blobs[name].data[...] = value
        trainer.net.forward()
        trainer.net.backward()
        gradients = {name: blobs[0].diff.copy() for name, blobs in trainer.net.params.items()
                     if name.startswith("Convolution")}
        losses = []
        for batch in batches:
            for name, value in batch.items():
                trainer.net.blobs[name].data[...] = value
            trainer.step(1)
            losses.append([float(trainer.net.blobs[name].data) for name in ("loss1", "loss3")])
        results[fused_cnn] = gradients, losses, {
            name: [blob.data.copy() for blob in blobs]
            for name, blobs in trainer.net.params.items()}
    (gradients, losses, params), (original_gradients, original_losses, original_params) = \
        results.values()
    assert sorted(gradients) == [f"Convolution{i}" for i in range(1, 8)]
    for name, expected in original_gradients.items():
        scale = np.abs(expected).max()
        assert scale > 0 and np.abs(gradients[name] - expected).max() <= GRADIENT_TOL * scale
    np.testing.assert_allclose(losses, original_losses, rtol=STEP_LOSS_RTOL)
    assert params.keys() == original_params.keys()
    shipped = CheckedNet(feature_net(64, 64, 20), caffe.TEST, weights=weights).net.params
    for name, blobs in original_params.items():
        for mine, theirs in zip(params[name], blobs):
            tolerance = STEP_WEIGHT_ATOL + STEP_WEIGHT_RTOL * np.abs(theirs).max()
            assert np.abs(mine - theirs).max() <= tolerance, name
        if name.startswith("Convolution"):  # trained: the comparison is not of the start
            assert not np.array_equal(shipped[name][0].data, params[name][0]), name
