"""SSN inside a downstream net: task labels, the generator, gradients and a short run."""
import csv
import json

import caffe
import numpy as np
import pytest
from caffe import layers as L
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from ssn.cli.eval_task import main as eval_task_main
from ssn.cli.make_prototxt import build_parser, options_from_args
from ssn.color import rgb_to_lab
from ssn.examples.downstream.evaluation import accuracy, image_config, moving_mean, plot_comparison
from ssn.examples.downstream.labels import lightness_class, segment_lightness_labels
from ssn.examples.downstream.net import (
    DOWNSTREAM_DIR,
    DownstreamConfig,
    DownstreamOptions,
    deploy_net,
    train_net,
)
from ssn.grid import init_cells
from ssn.nets.checked import CheckedNet
from ssn.nets.prototxt import PrototxtOptions, generate, solver, stale_files
from ssn.nets.prototxt import data_shapes as prototxt_data_shapes
from ssn.nets.weights import inputs_for_data_layers, write_initial_weights
from ssn.training.solver import train

FILLER_SEED = 1705
# Task loss only: the CNN can learn only through the superpixel pooling.
# The tiny nets' CNNs start from scratch: BatchNorm by the batch's statistics.
TASK_ONLY = dict(height=24, width=26, grid_request=9, num_steps=2, feature_dim=8, batch_size=1,
                 num_label_channels=4, compactness_weight=0, label_weight=0,
                 frozen_batch_norm=False)


@pytest.fixture(autouse=True)
def in_the_checkout(monkeypatch, repo_root):
    """Generated solvers name their nets relative to the working directory."""
    monkeypatch.chdir(repo_root)


def test_lightness_classes_are_equal_bins_of_0_to_100():
    np.testing.assert_array_equal(lightness_class([-5, 0, 33.2, 33.4, 66.7, 100, 140], 3),
                                  [0, 0, 0, 1, 2, 2, 2])
    np.testing.assert_array_equal(lightness_class([49.9, 50], 2), [0, 1])
    with pytest.raises(ValueError, match="num_classes"):
        lightness_class([10], 1)


def test_each_pixel_takes_the_class_of_its_segment_mean():
    lab = np.zeros((1, 3, 2, 4))
    # Segment 0 averages 40 (medium) although one of its pixels is dark; segment 1
    # averages 90 (light); the ignored pixel stays ignored.
    lab[0, 0] = [[10, 55, 55, 90], [40, 40, 90, 7]]
    segments = np.array([[[[0, 0, 0, 1], [0, 0, 1, 255]]]], dtype=np.float32)
    labels = segment_lightness_labels(lab, segments, 3)
    np.testing.assert_array_equal(labels, [[[[1, 1, 1, 2], [1, 1, 2, 255]]]])
    assert labels.dtype == np.float32


def test_segment_labels_are_per_image():
    lab = np.zeros((2, 3, 1, 2))
    lab[0, 0], lab[1, 0] = 10, 90
    segments = np.zeros((2, 1, 1, 2))
    np.testing.assert_array_equal(segment_lightness_labels(lab, segments, 2)[:, 0, 0],
                                  [[0, 0], [1, 1]])


@pytest.mark.parametrize("lab_shape, segment_shape, match", [
    ((1, 1, 4, 4), (1, 1, 4, 4), "N x 3 x H x W"),
    ((1, 3, 4, 4), (1, 1, 4, 5), "N x 1 x H x W"),
])
def test_bad_label_inputs_are_refused(lab_shape, segment_shape, match):
    with pytest.raises(ValueError, match=match):
        segment_lightness_labels(np.zeros(lab_shape), np.zeros(segment_shape), 3)


@pytest.mark.parametrize("bad", [-1, 0.5])
def test_segment_ids_must_be_non_negative_integers(bad):
    segments = np.zeros((1, 1, 2, 2))
    segments[0, 0, 1, 1] = bad
    with pytest.raises(ValueError, match="non-negative integers"):
        segment_lightness_labels(np.zeros((1, 3, 2, 2)), segments, 3)


def label_layer_net(param_str):
    net = caffe.NetSpec()
    net.img = L.Input(shape=dict(dim=[2, 3, 5, 6]))
    net.label = L.Input(shape=dict(dim=[2, 1, 5, 6]))
    net.task_label = L.Python(net.img, net.label, module="ssn.examples.downstream.labels",
                              layer="SegmentLightnessLayer", param_str=param_str,
                              propagate_down=[False, False])
    return CheckedNet(net.to_proto(), caffe.TEST)


def test_the_label_layer_computes_the_labels_in_the_net():
    rng = np.random.default_rng(5)
    img = rng.uniform(0, 100, (2, 3, 5, 6))
    label = rng.integers(0, 4, (2, 1, 5, 6)).astype(np.float32)
    out = label_layer_net('{"num_classes": 4}').forward(img=img, label=label)
    np.testing.assert_array_equal(out["task_label"], segment_lightness_labels(img, label, 4))


def test_the_label_layer_refuses_unknown_parameters():
    with pytest.raises(Exception, match="unknown param_str keys"):
        label_layer_net('{"classes": 4}')


def data_shapes(config):
    return {name: (config.batch_size, c, config.height, config.width) for name, c in
            dict(img=3, spixel_init=1, feat_spixel_init=1, label=1,
                 problabel=config.num_label_channels).items()}


def tiny_net(config, net_param=None):
    """The TRAIN net of ``config`` (or ``net_param``) with Input blobs for the data."""
    net_param = net_param if net_param is not None else train_net(config)
    caffe.set_random_seed(FILLER_SEED)  # the same weights on every run
    return CheckedNet(inputs_for_data_layers(net_param, caffe.TRAIN, data_shapes(config)),
                      caffe.TRAIN)


def synthetic_batch(rng, config):
    """Six flat regions of three lightness levels with noise, and their segments."""
    height, width = config.height, config.width
    segments = (np.arange(height)[:, None] * 2 // height) * 3 + \
        (np.arange(width)[None] * 3 // width)
    rgb = np.clip(np.array([0.1, 0.5, 0.9])[segments % 3][..., None]
                  * rng.uniform(0.7, 1.0, 3) + rng.normal(0, 0.08, (height, width, 3)), 0, 1)
    cells = init_cells(height, width, *config.grid)[None, None].astype(np.float32)
    onehot = (segments[None] == np.arange(config.num_label_channels)[:, None, None])
    return dict(img=rgb_to_lab(rgb).transpose(2, 0, 1)[None], spixel_init=cells,
                feat_spixel_init=cells, label=segments[None, None].astype(np.float32),
                problabel=onehot[None].astype(np.float32))


def with_propagate_down(net_param, layer_name, flags):
    out = caffe_pb2.NetParameter()
    out.CopyFrom(net_param)
    layer = next(layer for layer in out.layer if layer.name == layer_name)
    del layer.propagate_down[:]
    layer.propagate_down.extend(flags)
    return out


def cnn_gradient(net, reference, inputs):
    """Convolution1's weight gradient of ``net``, with the weights of ``reference``."""
    for name, blobs in reference.net.params.items():
        for mine, theirs in zip(net.net.params[name], blobs):
            mine.data[...] = theirs.data
    net.forward(**inputs)
    net.net.clear_param_diffs()
    net.net.backward()
    return net.net.params["Convolution1"][0].diff.copy()


def test_gradients_reach_the_cnn_through_both_inputs_of_the_pooling():
    """With only the task loss, every gradient the CNN gets passes SpixelFeature2:
    through its features and through the association (the SLIC layers). Each path
    alone gives a nonzero part, and the parts add up to the whole."""
    config = DownstreamConfig(**TASK_ONLY)
    net_param = train_net(config)
    full = tiny_net(config, net_param)
    inputs = synthetic_batch(np.random.default_rng(7), config)
    whole = cnn_gradient(full, full, inputs)
    parts = [cnn_gradient(tiny_net(config, with_propagate_down(
        net_param, "task_spixel_feat", flags)), full, inputs)
        for flags in ([True, False, False], [False, True, False])]
    scale = np.linalg.norm(whole)
    assert scale > 0
    for part in parts:
        assert np.linalg.norm(part) > 1e-3 * scale
    np.testing.assert_allclose(parts[0] + parts[1], whole, rtol=1e-3, atol=1e-4 * scale)
    assert np.abs(full.net.blobs["final_pixel_assoc"].diff).max() > 0


def test_without_the_pooling_path_the_cnn_gets_no_gradient():
    config = DownstreamConfig(**TASK_ONLY)
    cut = with_propagate_down(train_net(config), "task_spixel_feat", [False, False, False])
    net = tiny_net(config, cut)
    gradient = cnn_gradient(net, net, synthetic_batch(np.random.default_rng(7), config))
    assert np.all(gradient == 0)  # the test above can fail: the CNN hangs on this layer


def total_loss(net):
    return sum(float(net.blobs[name].data) * weight
               for name, weight in net.blob_loss_weights.items() if weight)


def central_difference(net, blob, index, eps, hard):
    """(L(x + eps) - L(x - eps)) / 2 eps for one entry of ``blob``, or None when a
    hard label flips (the loss jumps there)."""
    flat, values = net.blobs[blob].data.reshape(-1), []
    for step in (eps, -eps):
        original = flat[index]
        flat[index] = original + step
        net.forward(start="init_spixel_feat")
        flat[index] = original
        if not np.array_equal(net.blobs["new_spix_indices"].data, hard):
            return None
        values.append(total_loss(net))
    return (values[0] - values[1]) / (2 * eps)


def gradient_agreement(net, rng, per_group=15):
    """Fractions of entries of dL/dF (F = trans_features) where backward agrees with
    central differences: the largest entries of the position channels, which reach
    the loss only through SLIC's association, and of the other channels, which the
    head also pools. Entries where a hard label flips are skipped."""
    # Larger last weights than the filler's, so that the features carry gradient.
    last = net.net.params["task_fc2"][0].data
    last[...] = rng.normal(0, 0.3, last.shape)
    net.forward(**synthetic_batch(rng, DownstreamConfig(**TASK_ONLY)))
    net.net.backward()
    analytic = net.net.blobs["trans_features"].diff.copy()
    hard = net.net.blobs["new_spix_indices"].data.copy()
    position = np.zeros(analytic.shape, dtype=bool)
    position[:, :2] = True
    fractions = []
    for group in (position, ~position):
        magnitude = np.where(group, np.abs(analytic), -1).reshape(-1)
        agree = []
        for index in np.argsort(-magnitude)[:per_group]:
            numeric = central_difference(net.net, "trans_features", index, 1e-2, hard)
            expected = analytic.reshape(-1)[index]
            if numeric is not None:
                agree.append(abs(numeric - expected) <= 0.01 + 0.15 * abs(expected))
        assert len(agree) >= per_group - 3  # few label flips
        fractions.append(float(np.mean(agree)))
    return fractions


def test_task_loss_gradient_through_slic_pooling_and_smear_by_finite_differences():
    """dL/dF by central differences through SLIC, SpixelFeature2, the head and Smear.
    The loss is piecewise smooth (ReLU, the aliveness threshold) and float32, so
    90% must agree. (Cutting either input of the pooling fails this check.)"""
    net = tiny_net(DownstreamConfig(**dict(TASK_ONLY, task_weight=100.0)))
    assert min(gradient_agreement(net, np.random.default_rng(11))) >= 0.9


@pytest.mark.parametrize("flags", [[True, False, False], [False, True, False]],
                         ids=["no-association-path", "no-feature-path"])
def test_the_finite_difference_check_sees_a_missing_path(flags):
    config = DownstreamConfig(**dict(TASK_ONLY, task_weight=100.0))
    net = tiny_net(config, with_propagate_down(train_net(config), "task_spixel_feat", flags))
    assert min(gradient_agreement(net, np.random.default_rng(11))) < 0.9


def layer_types(net_param):
    return {layer.type for layer in net_param.layer}


def test_the_pixel_baseline_has_no_ssn_layers_unless_their_losses_are_on():
    baseline = train_net(DownstreamConfig(**dict(TASK_ONLY, spixel_pooling=False)))
    assert not layer_types(baseline) & {"Passoc", "SpixelFeature2", "Smear", "SpixelFeature"}
    multitask = train_net(DownstreamConfig(**dict(TASK_ONLY, spixel_pooling=False,
                                                  label_weight=1.0)))
    assert {"Passoc", "LossWithoutSoftmax"} <= layer_types(multitask)
    pooled = train_net(DownstreamConfig(**TASK_ONLY))
    assert {"Passoc", "SpixelFeature2", "Smear"} <= layer_types(pooled)
    assert not layer_types(pooled) & {"LossWithoutSoftmax", "EuclideanLoss"}


@pytest.mark.parametrize("pooling", [True, False], ids=["superpixels", "pixels"])
def test_deploy_net_gives_class_probabilities_per_pixel(pooling):
    config = DownstreamConfig(**dict(TASK_ONLY, spixel_pooling=pooling, num_classes=4))
    net = CheckedNet(deploy_net(config), caffe.TEST)
    inputs = synthetic_batch(np.random.default_rng(2), config)
    names = ["img"] + (["spixel_init", "feat_spixel_init"] if pooling else [])
    prob = net.forward(**{name: inputs[name] for name in names})["task_prob"]
    assert prob.shape == (1, 4, config.height, config.width)
    np.testing.assert_allclose(prob.sum(axis=1), 1, rtol=1e-5)
    if pooling:  # one distribution per superpixel
        labels = net.net.blobs["new_spix_indices"].data[0, 0]
        for spixel in np.unique(labels):
            first = prob[0, :, labels == spixel]
            np.testing.assert_allclose(first, first[:1].repeat(len(first), 0), rtol=1e-6)


@pytest.mark.parametrize("pooling", [True, False], ids=["superpixels", "pixels"])
@pytest.mark.parametrize("label_weight", [0.0, 1.0])
def test_the_train_net_outputs_only_its_losses(pooling, label_weight):
    """Unread data tops would be net outputs, which a solver displays value by value."""
    config = DownstreamConfig(**dict(TASK_ONLY, spixel_pooling=pooling,
                                     label_weight=label_weight))
    outputs = set(tiny_net(config).net.outputs)
    assert "task_loss" in outputs and outputs <= {"task_loss", "loss3"}


def batch_norm_frozen(net_param):
    return {layer.batch_norm_param.use_global_stats for layer in net_param.layer
            if layer.type == "BatchNorm"}


def test_fine_tuning_keeps_the_stored_batch_norm_statistics():
    assert batch_norm_frozen(DownstreamOptions().train_net_param()) == {True}
    assert batch_norm_frozen(train_net(DownstreamConfig(**TASK_ONLY))) == {False}
    assert batch_norm_frozen(PrototxtOptions().train_net_param()) == {False}  # SSN's own


def test_the_head_fits_both_nets():
    """The same head weights serve the superpixel net and the per-pixel baseline."""
    nets = [tiny_net(DownstreamConfig(**dict(TASK_ONLY, spixel_pooling=pooling)))
            for pooling in (True, False)]
    for name in ("task_fc1", "task_fc2", "Convolution7"):
        shapes = [[blob.data.shape for blob in net.net.params[name]] for net in nets]
        assert shapes[0] == shapes[1]


def test_committed_downstream_files_match_the_generator():
    options, out_dir = options_from_args(build_parser().parse_args(["--net", "downstream"]))
    assert out_dir == DOWNSTREAM_DIR and isinstance(options, DownstreamOptions)
    assert stale_files(generate(options, out_dir), out_dir) == []


def test_downstream_flags():
    options, _ = options_from_args(build_parser().parse_args(
        ["--net", "downstream", "--no-spixel-pooling", "--num-classes", "2", "--patch", "65"]))
    config = options.train_config()
    assert (config.spixel_pooling, config.num_classes, config.height) == (False, 2, 65)
    assert options.deploy_config().spixel_pooling is False
    for argv, match in [(["--num-classes", "2"], "option of --net downstream"),
                        (["--net", "downstream", "--recipe", "bsds_cpu"], "--recipe"),
                        (["--net", "downstream", "--fused"], "fused")]:
        with pytest.raises(ValueError, match=match):
            options_from_args(build_parser().parse_args(argv))


def test_bad_task_settings_are_refused():
    with pytest.raises(ValueError, match="num_classes"):
        DownstreamConfig(num_classes=1)
    with pytest.raises(ValueError, match="head_width"):
        DownstreamConfig(head_width=0)


def write_training_files(tmp_path, max_iter):
    # From scratch, so BatchNorm learns its statistics: frozen ones would be the
    # filler's zeros, which scale every activation by 1 / sqrt(eps).
    config = DownstreamConfig(height=41, width=41, grid_request=16, num_steps=2, feature_dim=8,
                              batch_size=2, num_label_channels=8, frozen_batch_norm=False,
                              data=dict(phase="val", repeat=1, workers=1, prefetch=1))
    (tmp_path / "net.prototxt").write_text(text_format.MessageToString(train_net(config)))
    options = DownstreamOptions(base_lr=2e-3, max_iter=max_iter, snapshot=0,
                                snapshot_prefix=str(tmp_path / "snap" / "task"))
    param = solver(options, str(tmp_path / "net.prototxt"))
    del param.test_iter[:]
    param.ClearField("test_interval")
    (tmp_path / "solver.prototxt").write_text(text_format.MessageToString(param))
    return tmp_path / "solver.prototxt"


@pytest.mark.slow
def test_short_training_lowers_the_task_loss(tmp_path, sample_root):
    result = train(write_training_files(tmp_path, max_iter=12))
    with open(result["log"]) as stream:
        losses = [float(row["task_loss"]) for row in csv.DictReader(stream)]
    assert len(losses) == 12
    assert np.mean(losses[-3:]) < 0.7 * losses[0], losses


def test_accuracy_is_the_mean_over_the_segmentations():
    lab = np.zeros((1, 4, 3))
    lab[0, :, 0] = [10, 10, 90, 90]
    one = np.array([[0, 0, 1, 1]])  # dark, dark, light, light
    other = np.zeros((1, 4), dtype=int)  # one segment of mean 50: light
    predicted = np.array([[0, 0, 1, 1]])
    assert accuracy(predicted, lab, [one, other], 2) == pytest.approx((1 + 0.5) / 2)
    with pytest.raises(ValueError, match="no segmentation"):
        accuracy(predicted, lab, [], 2)


def test_images_get_cells_of_the_training_size():
    options = DownstreamOptions(patch=100, n_spixels=25)  # 5 x 5 cells of 400 pixels
    config = image_config(options, 200, 300)
    assert config.n_spixels == 150 and config.grid == (10, 15)
    assert config.num_steps == options.deploy_num_steps and not config.fused
    assert image_config(options, 200, 300, n_spixels=6).grid == (2, 3)


@pytest.mark.parametrize("pooling", [True, False], ids=["superpixels", "pixels"])
def test_eval_task_runs_end_to_end(tmp_path, sample_root, pooling):
    options = DownstreamOptions(patch=33, n_spixels=9, batch_size=1, spixel_pooling=pooling)
    weights = tmp_path / "model.caffemodel"
    write_initial_weights(options.train_net_param(), prototxt_data_shapes(options), weights)
    flag = "--spixel-pooling" if pooling else "--no-spixel-pooling"
    out = tmp_path / "out"
    assert eval_task_main([str(weights), "--out", str(out), "--limit", "2", flag,
                           "--patch", "33", "--train-n-segments", "9", "--num-steps", "2"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["images"] == 2 and 0 <= summary["accuracy"] <= 1
    assert 0 < summary["own_lightness"] <= 1
    with open(out / "images.csv") as stream:
        assert [row["id"] for row in csv.DictReader(stream)] == ["9001", "9011"]
    assert eval_task_main([str(tmp_path / "missing.caffemodel"), "--out", str(out)]) == 2


def test_moving_mean_averages_the_window_before_each_value():
    np.testing.assert_allclose(moving_mean([1, 3, 5, 7], 2), [1, 2, 4, 6])
    np.testing.assert_allclose(moving_mean([2, 4], 10), [2, 3])
    with pytest.raises(ValueError, match="window"):
        moving_mean([1], 0)


@pytest.mark.slow
def test_comparison_plot(tmp_path):
    curves = {"a": ([1, 2, 3], [3.0, 2.0, 1.0]), "b": ([1, 2, 3], [3.0, 2.5, 2.0])}
    plot_comparison(curves, {"a": [0.5, 0.7], "b": [0.6, 0.8]}, tmp_path / "plot.png")
    assert (tmp_path / "plot.png").stat().st_size > 5000
    with pytest.raises(ValueError, match="two models"):
        plot_comparison(curves, {"a": [0.5]}, tmp_path / "bad.png")


def test_frozen_batch_norm_needs_weights_to_train_from(tmp_path, sample_root):
    solver_path = write_training_files(tmp_path, max_iter=1)
    net_path = tmp_path / "net.prototxt"
    config = DownstreamConfig(height=41, width=41, grid_request=16, num_steps=2, feature_dim=8,
                              batch_size=2, num_label_channels=8, frozen_batch_norm=True,
                              data=dict(phase="val", repeat=1, workers=1, prefetch=1))
    net_path.write_text(text_format.MessageToString(train_net(config)))
    with pytest.raises(ValueError, match="stored statistics"):
        train(solver_path)
