"""The build tool answers --help, and the commands run end to end."""
import csv
import importlib
import json
from pathlib import Path

import pytest


def test_build_tool_help(capsys):
    """The ssn-* commands are covered by test_commands.py; the build tool here."""
    with pytest.raises(SystemExit) as stop:
        importlib.import_module("ssn_build.cli").main(["--help"])
    assert stop.value.code == 0
    assert "examples:" in capsys.readouterr().out


@pytest.mark.slow
def test_eval_compares_inferred_maps_with_slic(tmp_path, val_images):
    from ssn.cli.eval import main as eval_main
    from ssn.cli.infer import main as infer_main
    image = val_images[0]  # --limit 1 evaluates this image
    assert infer_main([str(image), "--out", str(tmp_path / "ssn"), "--n-segments", "60",
                       "--num-steps", "3", "--features", "pixel"]) == 0
    out = tmp_path / "eval"
    assert eval_main(["--out", str(out), "--labels", f"SSN={tmp_path / 'ssn'}",
                      "--n-segments", "60", "--methods", "slic", "--limit", "1"]) == 0
    summary = {row["method"]: row for row in json.loads((out / "summary.json").read_text())}
    assert set(summary) == {"SSN", "SLIC"} and summary["SSN"]["requested"] == 60
    for row in summary.values():
        assert 0.5 < row["asa"] <= 1 and 0 < row["boundary_recall"] <= 1
    with open(out / "rows.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert len(rows) == 2 * summary["SSN"]["rows"]  # one row per (method, annotator)
    assert (out / "curves.png").stat().st_size > 10000


@pytest.mark.slow
def test_eval_on_a_folder_of_images_with_npy_ground_truth(tmp_path):
    import numpy as np
    from skimage import io as skio

    from ssn.cli.eval import main as eval_main
    images, truths = tmp_path / "images", tmp_path / "gt"
    images.mkdir()
    truths.mkdir()
    rng = np.random.default_rng(2)
    halves = np.zeros((40, 60), np.int32)
    halves[:, 30:] = 1
    image = np.where(halves[..., None] == 1, 200, 40).astype(np.uint8).repeat(3, axis=2)
    image = np.clip(image + rng.integers(0, 10, image.shape), 0, 255).astype(np.uint8)
    skio.imsave(images / "a.png", image, check_contrast=False)
    np.save(truths / "a.npy", np.stack([halves, halves]))  # two annotators
    skio.imsave(images / "no_truth.png", image, check_contrast=False)
    out = tmp_path / "eval"
    assert eval_main(["--out", str(out), "--images", str(images), "--gt", str(truths),
                      "--n-segments", "12", "--methods", "slic"]) == 0
    (summary,) = json.loads((out / "summary.json").read_text())
    assert summary["rows"] == 2 and summary["asa"] > 0.95
    assert eval_main(["--out", str(out), "--images", str(images), "--n-segments", "12",
                      "--methods", "slic"]) == 2


def test_snapshots_are_found_by_iteration_and_thinned(tmp_path):
    from ssn.evaluation.snapshots import find_snapshots, snapshot_iteration
    for iteration in (500, 1000, 1500, 2000, 2500):
        (tmp_path / f"ssn_iter_{iteration}.caffemodel").write_bytes(b"")
    (tmp_path / "ssn_iter_2500.solverstate").write_bytes(b"")
    found = find_snapshots([tmp_path], every=1000)
    assert [snapshot_iteration(path) for path in found] == [1000, 2000, 2500]
    with pytest.raises(ValueError, match="snapshot name"):
        snapshot_iteration(tmp_path / "model.caffemodel")
    with pytest.raises(FileNotFoundError):
        find_snapshots([tmp_path / "ssn_iter_9.caffemodel"])


def write_snapshot(path, net_param=None):
    """Initial weights of ``net_param``, by default the committed train net: a snapshot-like
    .caffemodel."""
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format

    from ssn.nets.prototxt import PROTOTXT_DIR, PrototxtOptions, data_shapes
    from ssn.nets.weights import write_initial_weights
    if net_param is None:
        net_param = text_format.Parse((PROTOTXT_DIR / "ssn_train_val.prototxt").read_text(),
                                      caffe_pb2.NetParameter())
    path = write_initial_weights(net_param, data_shapes(PrototxtOptions(batch_size=1)), path)
    # Unit variances, as after training: zero statistics make BatchNorm divide by
    # sqrt(eps), and six of them in a row blow the features up to where rounding decides.
    model = caffe_pb2.NetParameter.FromString(path.read_bytes())
    for layer in model.layer:
        if layer.type == "BatchNorm":
            layer.blobs[1].data[:] = [1.0] * len(layer.blobs[1].data)
            layer.blobs[2].data[:] = [1.0]
    path.write_bytes(model.SerializeToString())
    return path


def test_eval_snapshots_runs_end_to_end(tmp_path, sample_root):
    from ssn.cli.eval_snapshots import main as snapshots_main
    write_snapshot(tmp_path / "snap" / "ssn_iter_7.caffemodel")
    out = tmp_path / "out"
    assert snapshots_main([str(tmp_path / "snap"), "--out", str(out), "--limit", "1",
                           "--n-segments", "50", "--num-steps", "2"]) == 0
    with open(out / "snapshots.csv") as stream:
        rows = list(csv.DictReader(stream))
    assert [(row["method"], row["iteration"]) for row in rows] == [
        ("SLIC", "-1"), ("SSN_pix", "-1"), ("iter 7", "7")]
    assert all(0.5 < float(row["asa"]) <= 1 for row in rows)
    assert (out / "snapshots.png").stat().st_size > 10000
    assert snapshots_main([str(tmp_path / "empty"), "--out", str(out)]) == 2


def test_exported_model_keeps_only_the_deploy_layers_and_segments_alike(tmp_path):
    import numpy as np
    from skimage import data

    from ssn.cli.export_model import main as export_main
    from ssn.inference import deploy_net_for, superpixels
    from ssn.nets.checked import caffemodel_shapes
    from ssn.nets.generators import SSNConfig, train_net
    # The original's chains, whose fixed weights (concat_spixel_feat_50, recon_feat_50,
    # Convolution10) the deploy net does not have.
    chains = train_net(SSNConfig(fused_decoder=False))
    snapshot = write_snapshot(tmp_path / "ssn_iter_1.caffemodel", chains)
    exported = tmp_path / "model" / "ssn.caffemodel"
    assert export_main([str(snapshot), "--out", str(exported)]) == 0
    layers = caffemodel_shapes(exported)
    assert "Convolution7" in layers and not any(name.startswith("concat_spixel_feat")
                                                for name in layers)
    assert set(layers) < set(caffemodel_shapes(snapshot))
    image = data.astronaut()[::8, ::8]
    features = []
    for weights in (exported, snapshot):
        superpixels(image, 30, num_steps=2, weights=weights, features="deep")
        net = deploy_net_for(64, 64, 30, 2, "deep", str(weights)).net
        features.append(net.blobs["trans_features"].data.copy())
    np.testing.assert_allclose(features[0], features[1], rtol=1e-5, atol=1e-5)
    assert export_main([str(tmp_path / "missing.caffemodel"), "--out", str(exported)]) == 2


@pytest.mark.slow
def test_eval_runs_ssn_with_each_feature_mode(tmp_path, sample_root):
    from ssn.cli.eval import main as eval_main
    snapshot = write_snapshot(tmp_path / "ssn_iter_1.caffemodel")
    out = tmp_path / "eval"
    assert eval_main(["--out", str(out), "--n-segments", "40", "--methods", "ssn",
                      "--features", "deep", "pixel",
                      "--weights", str(snapshot), "--num-steps", "2", "--limit", "1"]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert sorted(row["method"] for row in summary) == ["SSN-deep", "SSN-pixel"]
    assert all(row["requested"] == 40 and 0.5 < row["asa"] <= 1 for row in summary)


@pytest.mark.slow
def test_demo_writes_labels_and_overlays(tmp_path):
    import runpy

    import numpy as np
    from skimage import io as skio
    demo = runpy.run_path(str(Path(__file__).parent.parent / "tools" / "demo.py"))
    assert demo["main"](["--images", "coffee", "--n-segments", "60", "--num-steps", "2",
                         "--out", str(tmp_path)]) == 0
    labels = np.load(tmp_path / "coffee.npy")
    assert labels.shape == (400, 600) and labels.min() == 0
    assert skio.imread(tmp_path / "coffee_overlay.png").shape == (400, 600, 3)
    assert skio.imread(tmp_path / "coffee_ssn_vs_slic.png").shape == (400, 1208, 3)


# --------------------------------------------------------------------------------------------
# ssn-train: a fresh run's loss log, --max-iter


def tiny_solver(folder: Path, max_iter: int) -> Path:
    from google.protobuf import text_format

    from ssn.nets.generators import SSNConfig, train_net
    from ssn.nets.prototxt import PrototxtOptions, solver
    config = SSNConfig(height=41, width=41, grid_request=16, num_steps=2, feature_dim=8,
                       batch_size=2, num_label_channels=8,
                       data=dict(phase="val", repeat=1, workers=1, prefetch=1))
    (folder / "net.prototxt").write_text(text_format.MessageToString(train_net(config)))
    options = PrototxtOptions(base_lr=1e-3, max_iter=max_iter, snapshot=4, test_interval=1000,
                              snapshot_prefix=str(folder / "snap" / "ssn"))
    param = solver(options, str(folder / "net.prototxt"))
    del param.test_iter[:]
    param.ClearField("test_interval")
    (folder / "solver.prototxt").write_text(text_format.MessageToString(param))
    return folder / "solver.prototxt"


def test_a_fresh_training_run_starts_its_own_loss_log(tmp_path, sample_root):
    from ssn.cli.train import main as train_main
    solver_path = tiny_solver(tmp_path, max_iter=2)
    assert train_main(["--solver", str(solver_path)]) == 0
    log_path = tmp_path / "snap" / "ssn_loss.csv"
    first = log_path.read_text()
    assert train_main(["--solver", str(solver_path), "--max-iter", "3"]) == 0
    with open(log_path) as stream:
        assert [int(row["iteration"]) for row in csv.DictReader(stream)] == [1, 2, 3]
    (aside,) = (tmp_path / "snap").glob("ssn_loss.*.csv")
    assert aside.read_text() == first


@pytest.mark.parametrize("value", ["-3", "0"])
def test_train_refuses_a_max_iter_below_one(tmp_path, caplog, value):
    from ssn.cli.train import main as train_main
    solver_path = tiny_solver(tmp_path, max_iter=2)
    assert train_main(["--solver", str(solver_path), "--max-iter", value]) == 2
    assert "--max-iter" in caplog.text and value in caplog.text
    assert not (tmp_path / "snap").exists()


@pytest.mark.parametrize("module", ["infer", "eval", "eval_snapshots", "eval_continuous",
                                    "bench_infer", "bench_train", "demo"])
@pytest.mark.parametrize("flag", ["--n-segments", "--num-steps"])
def test_a_count_below_one_is_refused_by_the_parser(module, flag, capsys):
    """Not a ZeroDivisionError per image later: one line and exit 2 before any work."""
    import importlib
    parser = importlib.import_module(f"ssn.cli.{module}").build_parser()
    if not any(flag in action.option_strings for action in parser._actions):
        pytest.skip(f"ssn-{module.replace('_', '-')} has no {flag}")
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args([flag, "0"])
    assert exit_info.value.code == 2
    assert "expected a number >= 1, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["infer", "eval", "eval_continuous", "train"])
@pytest.mark.parametrize("value", ["1e20", "nan", "0", "-1"])
def test_an_absurd_position_weight_is_refused_by_the_parser(module, value, capsys):
    import importlib
    parser = importlib.import_module(f"ssn.cli.{module}").build_parser()
    with pytest.raises(SystemExit) as exit_info:
        parser.parse_args(["--position-weight", value])
    assert exit_info.value.code == 2
    assert "--position-weight must be a finite number in [0.0001, 10000]" in \
        capsys.readouterr().err
