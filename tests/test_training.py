"""The SSN network generators, prototxt files, data pipeline and training."""
import csv
import dataclasses

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from ssn.bsds import read_split
from ssn.cli.make_prototxt import build_parser, options_from_args
from ssn.color import rgb_to_lab
from ssn.nets.checked import CheckedNet
from ssn.nets.generators import SSNConfig, deploy_net, train_net
from ssn.nets.prototxt import (
    DEPLOY,
    PROTOTXT_DIR,
    RECIPES,
    PrototxtOptions,
    generate,
    solver,
    stale_files,
)
from ssn.nets.weights import initialize_helper_weights, inputs_for_data_layers
from ssn.training import samples as ssn_data
from ssn.training.solver import train


@pytest.fixture(autouse=True)
def in_the_checkout(monkeypatch, repo_root):
    """Generated solvers name their nets relative to the working directory."""
    monkeypatch.chdir(repo_root)


TINY = dict(height=17, width=19, grid_request=9, num_steps=3, feature_dim=8, batch_size=1,
            num_label_channels=4)


def test_committed_prototxt_files_match_the_generator():
    assert stale_files(generate(PrototxtOptions()), PROTOTXT_DIR) == []


@pytest.mark.parametrize("recipe", sorted(RECIPES))
def test_committed_recipe_files_match_the_generator(recipe):
    options, out_dir = options_from_args(build_parser().parse_args(["--recipe", recipe]))
    assert out_dir == PROTOTXT_DIR / recipe
    assert stale_files(generate(options, out_dir), out_dir) == []


def test_a_recipe_folder_does_not_repeat_the_default_deploy_net(tmp_path):
    options = RECIPES["bsds_cpu"]
    assert DEPLOY not in generate(options, PROTOTXT_DIR / "bsds_cpu")
    assert not (PROTOTXT_DIR / "bsds_cpu" / DEPLOY).exists()
    # A recipe with another deploy net, or a folder outside prototxt/, gets its own.
    other = dataclasses.replace(options, deploy_width=400)
    assert DEPLOY in generate(other, PROTOTXT_DIR / "bsds_cpu")
    elsewhere = generate(options, tmp_path)
    assert elsewhere[DEPLOY] == (PROTOTXT_DIR / DEPLOY).read_text()


def test_flags_override_a_recipe():
    args = build_parser().parse_args(["--recipe", "bsds_cpu", "--base-lr", "0.01"])
    options, _ = options_from_args(args)
    assert (options.base_lr, options.batch_size) == (0.01, RECIPES["bsds_cpu"].batch_size)


def solver_of(files):
    return text_format.Parse(files["ssn_solver.prototxt"], caffe_pb2.SolverParameter())


def test_solver_names_the_train_net_written_beside_it(tmp_path):
    inside = solver_of(generate(PrototxtOptions(), PROTOTXT_DIR / "recipe"))
    assert inside.net == "prototxt/recipe/ssn_train_val.prototxt"
    outside = solver_of(generate(PrototxtOptions(), tmp_path))
    assert outside.net == str(tmp_path.resolve() / "ssn_train_val.prototxt")


def test_learning_rate_step_schedule():
    assert solver_of(generate(PrototxtOptions())).lr_policy == "fixed"
    stepped = solver_of(generate(PrototxtOptions(base_lr=5e-4, lr_step=3000, lr_gamma=0.2)))
    assert (stepped.lr_policy, stepped.stepsize, stepped.gamma) == ("step", 3000,
                                                                    pytest.approx(0.2))


@pytest.mark.slow
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "decomposed"])
@pytest.mark.parametrize("size", [(201, 201), (321, 481)])
def test_generated_nets_have_the_expected_shapes(size, fused):
    config = SSNConfig(height=size[0], width=size[1], grid_request=100, num_steps=2, fused=fused)
    grid_h, grid_w = config.grid
    net = CheckedNet(deploy_net(config)).net
    assert net.blobs["trans_features"].data.shape == (1, 20) + size
    assert net.blobs["init_spixel_feat"].data.shape == (1, 20, 1, grid_h * grid_w)
    assert net.blobs["new_spix_indices"].data.shape == (1, 1) + size
    cells = ssn_data.init_cells(*size, grid_h, grid_w)[None, None].astype(np.float32)
    rng = np.random.default_rng(size[0])
    image = rgb_to_lab(rng.uniform(size=size + (3,))).transpose(2, 0, 1)[None]
    labels = CheckedNet(deploy_net(config)).forward(
        outputs=["new_spix_indices"], img=image, spixel_init=cells,
        feat_spixel_init=cells)["new_spix_indices"]
    assert np.all(labels == np.round(labels)) and labels.min() >= 0
    assert labels.max() < grid_h * grid_w and len(np.unique(labels)) > grid_h * grid_w // 2
    layer_names = set(net._layer_names)
    assert {"Convolution1", "Convolution7", "BatchNorm6", "init_spixel_feat",
            "new_spix_indices" if not fused else "slic_iterations"} <= layer_names
    if fused:
        assert "final_pixel_assoc" not in net.blobs and "Passoc1" not in layer_names
        assert list(net.outputs) == ["new_spix_indices"]
    else:
        assert net.blobs["final_pixel_assoc"].data.shape == (1, 9) + size
        assert {"Passoc1", "Passoc2", "spixel_feat1", "final_pixel_assoc"} <= layer_names


@pytest.mark.slow
def test_the_deploy_file_is_fused_and_no_fused_writes_the_original_layers(tmp_path):
    from ssn.cli.make_prototxt import main as make_prototxt
    from ssn.inference import bundled_weights
    committed = (PROTOTXT_DIR / "ssn_deploy.prototxt").read_text()
    assert 'type: "SlicIterations"' in committed and 'type: "Passoc"' not in committed
    assert make_prototxt(["--out", str(tmp_path), "--no-fused"]) == 0
    decomposed = (tmp_path / "ssn_deploy.prototxt").read_text()
    assert 'type: "SlicIterations"' not in decomposed
    for name in ("Passoc1", "Passoc10", "spixel_feat9", "final_pixel_assoc", "ArgMax1",
                 "new_spix_indices"):
        assert f'name: "{name}"' in decomposed
    # Both load with the shipped model and label a photo alike.
    from skimage import data, transform
    rgb = transform.resize(data.astronaut(), (321, 481), anti_aliasing=True)
    lab = rgb_to_lab(rgb).transpose(2, 0, 1)[None]
    config = PrototxtOptions().deploy_config()
    cells = ssn_data.init_cells(321, 481, *config.grid)[None, None].astype(np.float32)
    labels = [CheckedNet(path, weights=bundled_weights()).forward(
        outputs=["new_spix_indices"], img=lab, spixel_init=cells,
        feat_spixel_init=cells)["new_spix_indices"]
        for path in (PROTOTXT_DIR / "ssn_deploy.prototxt", tmp_path / "ssn_deploy.prototxt")]
    assert np.mean(labels[0] == labels[1]) > 0.999


def test_fused_flag_of_the_prototxt_tool():
    default, _ = options_from_args(build_parser().parse_args([]))
    off, _ = options_from_args(build_parser().parse_args(["--no-fused"]))
    assert default.fused is True and off.fused is False
    assert off.deploy_config().fused is False and default.deploy_config().fused is True


def tiny_train_net(config):
    """The TRAIN net of ``config`` with Input blobs in place of the data layer."""
    shapes = {name: (config.batch_size, c, config.height, config.width) for name, c in
              dict(img=3, spixel_init=1, feat_spixel_init=1, label=1,
                   problabel=config.num_label_channels).items()}
    net = CheckedNet(inputs_for_data_layers(train_net(config), caffe.TRAIN, shapes),
                     caffe.TRAIN)
    initialize_helper_weights(net.net)
    return net


def synthetic_batch(rng, config):
    """A Lab image of a few flat regions with noise, and its labels."""
    height, width = config.height, config.width
    segmentation = (np.arange(height)[:, None] * 3 // height) * 2 + \
        (np.arange(width)[None] * 2 // width)
    palette = rng.uniform(0, 1, size=(segmentation.max() + 1, 3))
    rgb = np.clip(palette[segmentation] + rng.normal(0, 0.03, (height, width, 3)), 0, 1)
    label, onehot = ssn_data.labels_to_channels(segmentation, config.num_label_channels)
    cells = ssn_data.init_cells(height, width, *config.grid)[None, None].astype(float)
    return dict(img=rgb_to_lab(rgb).transpose(2, 0, 1)[None], spixel_init=cells,
                feat_spixel_init=cells, label=label[None, None], problabel=onehot[None])


def total_loss(net):
    return sum(float(net.blobs[name].data) * weight
               for name, weight in net.blob_loss_weights.items() if weight)


def test_train_net_gradient_wrt_cnn_features_by_finite_differences():
    config = SSNConfig(**TINY)
    net = tiny_train_net(config)
    rng = np.random.default_rng(3)
    net.forward(**synthetic_batch(rng, config))
    net.net.backward()
    features = net.net.blobs["trans_features"]
    analytic = features.diff.copy()
    assert np.abs(analytic).max() > 0
    first_consumer = "init_spixel_feat"
    eps = 1e-2
    flat = features.data.reshape(-1)
    checked = 0
    for index in rng.choice(flat.size, size=40, replace=False):
        original = flat[index]
        flat[index] = original + eps
        net.net.forward(start=first_consumer)
        plus = total_loss(net.net)
        flat[index] = original - eps
        net.net.forward(start=first_consumer)
        minus = total_loss(net.net)
        flat[index] = original
        numeric = (plus - minus) / (2 * eps)
        expected = analytic.reshape(-1)[index]
        assert abs(numeric - expected) <= 2e-3 + 0.05 * abs(expected), (index, numeric, expected)
        checked += abs(expected) > 1e-4
    assert checked >= 5  # enough entries with a real gradient


def test_labels_beyond_the_channels_are_ignored():
    segmentation = np.array([[7, 3, 3], [9, 5, 3]])
    label, onehot = ssn_data.labels_to_channels(segmentation, 3)
    np.testing.assert_array_equal(label, [[2, 0, 0], [255, 1, 0]])
    assert onehot.shape == (3, 2, 3)
    np.testing.assert_array_equal(onehot.sum(0), [[1, 1, 1], [0, 1, 1]])


def test_training_batches_are_seeded_per_sample(sample_root):
    sampler = ssn_data.BSDSSampler("val", (41, 45), (3, 3), batch_size=2, num_label_channels=8,
                                   ids=read_split("val")[:3])
    first, again, other = sampler.batch(0), sampler.batch(0), sampler.batch(1)
    for a, b in zip(first.tops(), again.tops()):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first.img, other.img)
    assert first.img.shape == (2, 3, 41, 45) and first.problabel.shape == (2, 8, 41, 45)
    assert first.label.max() < 8 or 255 in first.label
    # Lab ranges: L in [0, 100]
    assert 0 <= first.img[:, 0].min() and first.img[:, 0].max() <= 100


def write_tiny_training_files(tmp_path, max_iter, fused_decoder=True):
    config = SSNConfig(height=41, width=41, grid_request=16, num_steps=2, feature_dim=8,
                       batch_size=2, num_label_channels=8, fused_decoder=fused_decoder,
                       data=dict(phase="val", repeat=1, workers=1, prefetch=1))
    (tmp_path / "net.prototxt").write_text(text_format.MessageToString(train_net(config)))
    options = PrototxtOptions(base_lr=1e-3, max_iter=max_iter, snapshot=4, test_interval=1000,
                              snapshot_prefix=str(tmp_path / "snap" / "ssn"))
    param = solver(options, str(tmp_path / "net.prototxt"))
    del param.test_iter[:]
    param.ClearField("test_interval")
    (tmp_path / "solver.prototxt").write_text(text_format.MessageToString(param))
    return tmp_path / "solver.prototxt"


def read_log(path):
    with open(path) as stream:
        return [row for row in csv.DictReader(stream)]


def test_short_training_lowers_the_loss_and_resumes(tmp_path, sample_root):
    solver_path = write_tiny_training_files(tmp_path, max_iter=8)
    result = train(solver_path)
    assert result["iteration"] == 8
    rows = read_log(result["log"])
    losses = [float(row["loss"]) for row in rows]
    assert len(losses) == 8 and losses[-1] < losses[0]
    assert (tmp_path / "snap" / "ssn_iter_4.solverstate").exists()
    # Each snapshot carries the settings it was trained at, not yet calibrated.
    from ssn.model_metadata import read_metadata
    settings = read_metadata(tmp_path / "snap" / "ssn_iter_4.json")
    assert (settings.feature_dim, settings.position_weight) == (8, 1.0)
    assert settings.calibration is None
    resumed = train(solver_path, resume=tmp_path / "snap" / "ssn_iter_4.solverstate",
                    max_iter=6)
    assert resumed["iteration"] == 6
    assert [int(row["iteration"]) for row in read_log(result["log"])][-2:] == [5, 6]


def test_resume_and_weights_are_exclusive(tmp_path):
    with pytest.raises(ValueError, match="not both"):
        train(tmp_path / "solver.prototxt", weights=tmp_path / "a", resume=tmp_path / "b")


def test_generated_train_net_parses_as_solver_net(repo_root):
    text = (repo_root / "prototxt" / "ssn_train_val.prototxt").read_text()
    param = text_format.Parse(text, caffe_pb2.NetParameter())
    assert [layer.name for layer in param.layer[:2]] == ["train_data", "val_data"]


@pytest.mark.slow
@pytest.mark.parametrize("stop", ["SIGINT", "SIGTERM"])
def test_stop_signal_writes_a_snapshot_and_exits_cleanly(tmp_path, stop, sample_root, repo_root):
    import signal
    import subprocess
    import sys
    import time
    solver_path = write_tiny_training_files(tmp_path, max_iter=100000)
    log = tmp_path / "snap" / "ssn_loss.csv"
    tool = repo_root / "tools" / "train.py"
    # SIGINT ignored at start, as for a job a non-interactive shell sends to the background.
    process = subprocess.Popen([sys.executable, str(tool), "--solver", str(solver_path)],
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and (not log.exists() or len(read_log(log)) < 2):
        time.sleep(0.2)
    process.send_signal(getattr(signal, stop))
    output, _ = process.communicate(timeout=120)
    assert process.returncode == 0, output[-2000:]
    import re
    last = int(re.search(r"interrupted at iteration (\d+)", output).group(1))
    assert last >= int(read_log(log)[-1]["iteration"]) >= 2
    assert (tmp_path / "snap" / f"ssn_iter_{last}.caffemodel").exists(), output[-2000:]
    assert (tmp_path / "snap" / f"ssn_iter_{last}.solverstate").exists()


@pytest.mark.slow
def test_weights_without_the_helper_layers_still_train(tmp_path, sample_root):
    # The original's decoder chain, whose gather convolution has fixed weights.
    solver_path = write_tiny_training_files(tmp_path, max_iter=4, fused_decoder=False)
    train(solver_path)
    snapshot = tmp_path / "snap" / "ssn_iter_4.caffemodel"
    model = caffe_pb2.NetParameter.FromString(snapshot.read_bytes())
    kept = [layer for layer in model.layer if not layer.name.startswith("concat_spixel_feat")]
    assert len(kept) == len(model.layer) - 1
    del model.layer[:]
    model.layer.extend(kept)
    (tmp_path / "deploy_only.caffemodel").write_bytes(model.SerializeToString())
    first = train(solver_path, weights=snapshot, max_iter=1,
                  snapshot_prefix=str(tmp_path / "a" / "ssn"))
    stripped = train(solver_path, weights=tmp_path / "deploy_only.caffemodel", max_iter=1,
                     snapshot_prefix=str(tmp_path / "b" / "ssn"))
    # Without the fixed decoder weights the label reconstruction is 0 and the
    # label loss is many times larger.
    label_loss = "loss3"
    assert stripped["losses"][label_loss] == pytest.approx(first["losses"][label_loss],
                                                           rel=0.5)


@pytest.mark.slow
def test_a_diverging_run_exits_1_keeping_the_last_snapshot(tmp_path, sample_root):
    """Huge but finite weights make the losses NaN: ssn-train stops with exit 1 and its
    message, keeps the snapshot it wrote before, and does not corrupt memory (the max
    pooling backward wrote before its buffer on NaN windows: 'double free', rc 134)."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    solver_path = write_tiny_training_files(tmp_path, max_iter=4)
    train(solver_path)
    good = tmp_path / "snap" / "ssn_iter_4.caffemodel"
    model = caffe_pb2.NetParameter.FromString(good.read_bytes())
    for layer in model.layer:
        if layer.name == "Convolution1":
            layer.blobs[0].ClearField("data")
            layer.blobs[0].data.extend([1e38] * np.prod(layer.blobs[0].shape.dim))
    (tmp_path / "huge.caffemodel").write_bytes(model.SerializeToString())
    result = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "ssn-train"), "--solver", str(solver_path),
         "--weights", str(tmp_path / "huge.caffemodel"), "--max-iter", "2",
         "--snapshot-prefix", str(tmp_path / "diverged" / "ssn")],
        capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "loss is nan" in result.stderr
    assert good.exists()
    assert not list((tmp_path / "diverged").glob("*_iter_*"))


def zoom_then_crop(sample, rng, patch):
    """The augmentation as first written: scale the whole image and target with
    scipy.ndimage.zoom, mirror, then crop (the reference for the windowed version)."""
    import scipy.ndimage
    height, width = patch
    scale = ssn_data.random_scale(rng)
    scale = max(scale, height / sample.rgb.shape[0], width / sample.rgb.shape[1])
    rgb = scipy.ndimage.zoom(sample.rgb.astype(np.float32) / 255.0, (scale, scale, 1),
                             order=1, grid_mode=False)
    target = sample.segmentations[rng.integers(len(sample.segmentations))]
    target = scipy.ndimage.zoom(target, (scale, scale) + (1,) * (target.ndim - 2), order=0)
    rows, cols = min(rgb.shape[0], target.shape[0]), min(rgb.shape[1], target.shape[1])
    flipped = bool(rng.uniform() > 0.5)
    if flipped:
        rgb, target = rgb[:, ::-1], target[:, ::-1]
    top, left = int(rng.integers(0, rows - height + 1)), int(rng.integers(0, cols - width + 1))
    return (np.clip(rgb[top:top + height, left:left + width], 0, 1),
            target[top:top + height, left:left + width], scale, flipped)


@pytest.mark.slow
@pytest.mark.parametrize("size", [(321, 481), (481, 321), (205, 210)])
def test_augmentation_scales_only_the_window_it_crops(size):
    """The same patches as zooming the whole image first: targets exactly, images to
    one float32 rounding (the bilinear sums run in another order)."""
    from ssn.bsds import BSDSImage
    data = np.random.default_rng(size[0])
    for trial in range(12):
        image = data.integers(0, 256, size + (3,), dtype=np.uint8)
        targets = ([data.integers(0, 40, size).astype(np.uint16) for _ in range(3)]
                   if trial % 3 else [data.random(size + (2,)).astype(np.float32)])
        sample = BSDSImage(rgb=image, segmentations=targets)
        expected = zoom_then_crop(sample, np.random.default_rng(trial), (201, 201))
        got = ssn_data.augment_with_geometry(sample, np.random.default_rng(trial), (201, 201))
        assert got[2:] == expected[2:]
        np.testing.assert_array_equal(got[1], expected[1])
        np.testing.assert_allclose(got[0], expected[0], rtol=0, atol=1.2e-7)
        assert got[0].dtype == np.float32 and got[0].shape == (201, 201, 3)


@pytest.fixture
def few_inodes(tmp_path):
    """A folder on a tmpfs with room for 4 files or folders (needs root to mount)."""
    import subprocess
    folder = tmp_path / "few_inodes"
    folder.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m,nr_inodes=4", "tmpfs",
                              str(folder)], capture_output=True, text=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.strip()}")
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=False)


@pytest.mark.slow
def test_out_of_inodes_at_a_snapshot_is_an_error_not_an_abort(tmp_path, sample_root,
                                                               few_inodes):
    """Caffe aborts when a snapshot write fails; ssn-train makes the files first, so a
    folder out of inodes stops training with its message instead: exit 1, a failure of
    the run, not of its arguments."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    solver_path = write_tiny_training_files(tmp_path, max_iter=4)
    result = subprocess.run(
        [str(Path(sys.prefix) / "bin" / "ssn-train"), "--solver", str(solver_path),
         "--snapshot-prefix", str(few_inodes / "ssn")],
        capture_output=True, text=True, timeout=300, env=dict(os.environ))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "cannot write the snapshot of iteration 4" in result.stderr
    assert "No space left on device" in result.stderr
