"""Training on a data set of pairs: the continuous loss, the run files, ``ssn-train --dataset``."""
import dataclasses

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from ssn.cli.train import main
from ssn.color import rgb_to_lab
from ssn.grid import init_cells
from ssn.nets.checked import CheckedNet
from ssn.nets.generators import TRAIN_POSITION_SCALE, SSNConfig, train_net
from ssn.nets.weights import initialize_helper_weights, inputs_for_data_layers
from ssn.reference.grid import neighbour_index
from ssn.training.pairs import DatasetError
from ssn.training.task_run import TASK_RECIPE, prepare_run
from tests.pair_data import flow_folder, label_folder

CONTINUOUS = dict(height=17, width=19, grid_request=9, num_steps=3, feature_dim=8, batch_size=2,
                  target="continuous", target_channels=2, target_weight=1e-2)


def continuous_net(config, unweighted=()):
    """The TRAIN net of ``config`` on Input layers; the losses in ``unweighted`` weigh 0."""
    shapes = dict(img=(2, 3, 17, 19), spixel_init=(2, 1, 17, 19),
                  feat_spixel_init=(2, 1, 17, 19), target=(2, config.target_channels, 17, 19))
    param = inputs_for_data_layers(train_net(config), caffe.TRAIN, shapes)
    for layer in param.layer:
        if layer.name in unweighted:
            layer.loss_weight[:] = [0.0]
    net = CheckedNet(param, caffe.TRAIN).net
    initialize_helper_weights(net)
    return net


def batch(rng, config, target):
    cells = init_cells(17, 19, *config.grid)[None, None].astype(float).repeat(2, 0)
    rgb = rng.uniform(0, 1, (2, 17, 19, 3))
    lab = np.stack([rgb_to_lab(image).transpose(2, 0, 1) for image in rgb])
    return dict(img=lab, spixel_init=cells, feat_spixel_init=cells, target=target)


def test_a_constant_target_is_rebuilt_exactly():
    config = SSNConfig(**CONTINUOUS)
    net = continuous_net(config)
    target = np.zeros((2, 2, 17, 19)) + np.array([3.0, -2.0])[None, :, None, None]
    net.forward(**batch(np.random.default_rng(0), config, target))
    np.testing.assert_allclose(net.blobs["recon_target"].data, target, atol=1e-4)
    assert float(net.blobs["loss3"].data) < 1e-6


def test_the_reconstruction_is_the_association_mix_of_superpixel_means():
    config = SSNConfig(**CONTINUOUS)
    net = continuous_net(config)
    rng = np.random.default_rng(1)
    target = rng.normal(size=(2, 2, 17, 19))
    inputs = batch(rng, config, target)
    net.forward(**inputs)
    assoc, means = net.blobs["final_pixel_assoc"].data, net.blobs["spixel_target"].data
    grid_h, grid_w = config.grid
    expected = np.zeros_like(target)
    for n in range(2):
        for y in range(17):
            for x in range(19):
                cell = int(inputs["spixel_init"][n, 0, y, x])
                for c in range(9):
                    j = neighbour_index(cell, c, grid_h, grid_w)
                    if j >= 0:
                        expected[n, :, y, x] += assoc[n, c, y, x] * means[n, :, 0, j]
    np.testing.assert_allclose(net.blobs["recon_target"].data, expected, atol=1e-5)
    # EuclideanLoss: sum of squares / (2 N), times the weight.
    assert float(net.blobs["loss3"].data) == pytest.approx(
        ((expected - target) ** 2).sum() / 4, rel=1e-4)


def numpy_superpixel_means(assoc, cells, target, grid_h, grid_w):
    """mu_j = sum_i q_ij T_i / sum_i q_ij over the pixels that have j among their 9 neighbours."""
    batch, channels = target.shape[:2]
    sums = np.zeros((batch, channels, grid_h * grid_w))
    weights = np.zeros((batch, grid_h * grid_w))
    for n, y, x in np.ndindex(batch, *target.shape[2:]):
        for c in range(9):
            j = neighbour_index(int(cells[n, 0, y, x]), c, grid_h, grid_w)
            if j >= 0:
                sums[n, :, j] += assoc[n, c, y, x] * target[n, :, y, x]
                weights[n, j] += assoc[n, c, y, x]
    return sums / np.maximum(weights, 1e-12)[:, None]


def test_the_expected_loss_is_the_association_weighted_error_of_single_means():
    # A finer grid than CONTINUOUS's 3 x 3, whose superpixels all mix most pixels.
    config = SSNConfig(**dict(CONTINUOUS, grid_request=30), continuous_loss="expected")
    net = continuous_net(config)
    rng = np.random.default_rng(3)
    ys, xs = np.mgrid[:17, :19]
    # A ramp, so that the superpixel means differ, plus noise.
    target = np.stack([xs, -ys])[None] * 0.5 + rng.normal(size=(2, 2, 17, 19))
    inputs = batch(rng, config, target)
    net.forward(**inputs)
    assoc, cells = net.blobs["final_pixel_assoc"].data, inputs["spixel_init"]
    grid_h, grid_w = config.grid
    means = numpy_superpixel_means(assoc, cells, target, grid_h, grid_w)
    expected_error, spread_of_means = 0.0, 0.0
    for n, y, x in np.ndindex(2, 17, 19):
        mixed = [(assoc[n, c, y, x], means[n, :, j]) for c in range(9)
                 if (j := neighbour_index(int(cells[n, 0, y, x]), c, grid_h, grid_w)) >= 0]
        recon = sum(q * mean for q, mean in mixed)
        expected_error += sum(q * ((target[n, :, y, x] - mean) ** 2).sum() for q, mean in mixed)
        spread_of_means += sum(q * ((mean - recon) ** 2).sum() for q, mean in mixed)
    soft, spread = float(net.blobs["loss3"].data), float(net.blobs["loss_spread"].data)
    # Both over 2N = 4, like EuclideanLoss.
    assert spread == pytest.approx(spread_of_means / 4, rel=1e-3)
    assert soft + spread == pytest.approx(expected_error / 4, rel=1e-4)
    assert dict(net.blob_loss_weights)["loss_spread"] == pytest.approx(config.target_weight)


def test_a_soft_continuous_net_has_no_spread_term():
    soft = {layer.name for layer in train_net(SSNConfig(**CONTINUOUS)).layer}
    expected = {layer.name for layer in train_net(
        SSNConfig(**CONTINUOUS, continuous_loss="expected")).layer}
    assert "loss_spread" not in soft and "loss_spread" in expected
    assert soft < expected
    with pytest.raises(ValueError, match="continuous_loss must be one of"):
        SSNConfig(**CONTINUOUS, continuous_loss="hard")


# The second case checks the spread term alone, on a grid fine enough for it to matter.
@pytest.mark.parametrize("kind, n_spixels, unweighted", [("soft", 9, ()),
                                                         ("expected", 30, ("loss3",))])
def test_the_continuous_loss_gradient_matches_finite_differences(kind, n_spixels, unweighted):
    config = SSNConfig(**dict(CONTINUOUS, grid_request=n_spixels), continuous_loss=kind)
    net = continuous_net(config, unweighted)
    rng = np.random.default_rng(2)
    ys, xs = np.mgrid[:17, :19]
    target = np.stack([xs, -ys])[None] * 0.5 + rng.normal(size=(2, 2, 17, 19))
    net.forward(**batch(rng, config, target))
    net.backward()
    features = net.blobs["trans_features"]
    analytic = features.diff.copy().reshape(-1)
    assert np.abs(analytic).max() > 0
    weight = config.target_weight
    flat, eps, checked = features.data.reshape(-1), 1e-2, 0
    for index in rng.choice(flat.size, size=30, replace=False):
        original, values = flat[index], []
        for shift in (eps, -eps):
            flat[index] = original + shift
            net.forward(start="init_spixel_feat")
            values.append(sum(float(net.blobs[name].data) * w
                              for name, w in net.blob_loss_weights.items() if w))
        flat[index] = original
        numeric = (values[0] - values[1]) / (2 * eps)
        assert abs(numeric - analytic[index]) <= 2e-3 * weight * 100 + 0.05 * abs(numeric), \
            (index, numeric, analytic[index])
        checked += abs(analytic[index]) > 1e-4
    assert checked >= 5


def test_labels_and_continuous_nets_differ_only_in_the_loss():
    labels = train_net(SSNConfig(**dict(CONTINUOUS, target="labels")))
    continuous = train_net(SSNConfig(**CONTINUOUS))
    assert "LossWithoutSoftmax" in {layer.type for layer in labels.layer}
    types = {layer.name: layer.type for layer in continuous.layer}
    assert types["loss3"] == "EuclideanLoss" and "LossWithoutSoftmax" not in types.values()
    assert list(continuous.layer[0].top) == ["img", "spixel_init", "feat_spixel_init", "target"]


def test_a_bad_target_kind_is_an_error():
    with pytest.raises(ValueError, match="target must be one of"):
        SSNConfig(target="depth")


def test_prepare_run_writes_a_solver_without_tests_and_is_idempotent(tmp_path):
    data = flow_folder(tmp_path / "d")
    solver = prepare_run(data, "continuous", tmp_path / "run")
    param = text_format.Parse(solver.read_text(), caffe_pb2.SolverParameter())
    assert len(param.test_iter) == 0 and param.test_interval == 0
    assert param.snapshot_prefix == str((tmp_path / "run" / "ssn").resolve())
    net = (tmp_path / "run" / "ssn_train_val.prototxt").read_text()
    assert '\\"flow\\": true' in net and '\\"target\\": \\"continuous\\"' in net
    before = solver.stat().st_mtime_ns
    prepare_run(data, "continuous", tmp_path / "run")
    assert solver.stat().st_mtime_ns == before


def test_a_run_trains_at_its_position_weight(tmp_path):
    """Both nets of the run scale the positions by the weight; the BSDS recipe's
    scales are the default's."""
    data = label_folder(tmp_path / "d")
    scales = {}
    for weight in (1.0, 2.5):
        run = tmp_path / f"run{weight}"
        prepare_run(data, "labels", run, dataclasses.replace(TASK_RECIPE, position_weight=weight))
        scales[weight] = [
            [layer.pixel_feature_param.pos_scale for layer in text_format.Parse(
                (run / name).read_text(), caffe_pb2.NetParameter()).layer
             if layer.type == "PixelFeature"]
            for name in ("ssn_train_val.prototxt", "ssn_deploy.prototxt")]
    for one, weighted in zip(scales[1.0], scales[2.5]):
        assert one and weighted == pytest.approx([2.5 * scale for scale in one])
    assert scales[1.0][0] == [pytest.approx(TRAIN_POSITION_SCALE)]


def test_prepare_run_refuses_flow_that_is_not_two_channels(tmp_path):
    data = label_folder(tmp_path / "d")
    with pytest.raises(DatasetError, match="2 channels"):
        prepare_run(data, "continuous", tmp_path / "run", flow=True)


def test_one_command_trains_a_folder_of_label_pairs_and_resumes(tmp_path):
    data = label_folder(tmp_path / "mine", stems=("a", "b", "c"), height=30, width=34)
    run = tmp_path / "run"
    common = ["--dataset", str(data), "--target", "labels", "--out", str(run), "--patch", "25",
              "--n-segments", "9", "--num-steps", "2", "--snapshot", "2"]
    assert main(common + ["--max-iter", "3"]) == 0
    assert (run / "ssn_iter_2.solverstate").exists() and (run / "ssn_iter_3.caffemodel").exists()
    assert main(common + ["--max-iter", "4", "--resume",
                          str(run / "ssn_iter_2.solverstate")]) == 0
    rows = (run / "ssn_loss.csv").read_text().splitlines()
    assert [row.split(",")[0] for row in rows[1:]] == ["1", "2", "3", "4"]


def test_one_command_trains_on_continuous_targets(tmp_path):
    data = flow_folder(tmp_path / "flow", height=30, width=34)
    run = tmp_path / "run"
    assert main(["--dataset", str(data), "--val-dataset", str(data), "--target", "continuous",
                 "--out", str(run), "--patch", "25", "--n-segments", "9", "--num-steps", "2",
                 "--max-iter", "2", "--batch-size", "1"]) == 0
    header = (run / "ssn_loss.csv").read_text().splitlines()[0]
    assert header.split(",")[:4] == ["iteration", "loss", "loss1", "loss3"]


@pytest.mark.parametrize("extra, message", [
    (["--solver", "x.prototxt"], "writes its own solver"),
    ([], "needs --out"),
])
def test_dataset_flag_mistakes_are_errors(tmp_path, caplog, extra, message):
    data = label_folder(tmp_path / "d")
    args = ["--dataset", str(data)] + extra
    if message != "needs --out":
        args += ["--out", str(tmp_path / "run")]
    assert main(args) == 2
    assert message in caplog.text


def test_a_bad_data_set_stops_before_caffe(tmp_path, caplog):
    data = label_folder(tmp_path / "d", stems=("a", "b", "c"))
    (data / "targets" / "a.png").unlink()
    np.save(data / "targets" / "a.npy", np.zeros((12, 16)))  # float labels
    (data / "targets" / "c.png").write_bytes(b"")
    assert main(["--dataset", str(data), "--target", "labels", "--out", str(tmp_path / "r")]) == 2
    assert "2 of 3 pairs cannot be used" in caplog.text
    assert "a.npy holds float64 values: labels are integer" in caplog.text
    assert "c.png" in caplog.text and not (tmp_path / "r").exists()


@pytest.mark.parametrize("params, message", [
    ('{"target": "depth"}', "target must be one of"),
    ('{"target": "continuous"}', "needs a dataset of pairs"),
])
def test_data_layer_params_are_checked(params, message):
    from ssn.training.data_layer import parse_param_str
    with pytest.raises(ValueError, match=message):
        parse_param_str(params)
