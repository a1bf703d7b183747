"""Bad inputs and faults: each gives its exact, clear outcome and none aborts the interpreter.

Cases that reach Caffe, which ends the process on a failed CHECK, run in a
subprocess: a regression shows as a dead child, not a dead test run.
"""
from __future__ import annotations

import csv
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format
from skimage import io as skio

from tests import crash_cases as cases

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "bsds_sample"
CASES_SCRIPT = Path(cases.__file__)

# ---------------------------------------------------------------------------------------
# Helpers


def outcome(case: Callable, *args, timeout: float = 300) -> str:
    """The line ``case(*args)`` (a function of crash_cases.py) returns, run in a fresh
    interpreter that must not die."""
    result = subprocess.run([sys.executable, str(CASES_SCRIPT), case.__name__, *map(str, args)],
                            capture_output=True, text=True, cwd=REPO, timeout=timeout,
                            env=environment())
    assert result.returncode == 0, (
        f"the interpreter died (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def environment(extra_path: Path | None = None) -> dict[str, str]:
    """This environment, with this checkout (and ``extra_path``) first on the module path."""
    paths = [str(path) for path in (extra_path, REPO) if path is not None]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(
        paths + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p])}


def conv_model(path: Path, channels: int = 2) -> caffe_pb2.NetParameter:
    """Save the weights of a one-convolution net; return them parsed."""
    assert outcome(cases.save_conv_model, path, channels) == "ok"
    return caffe_pb2.NetParameter.FromString(path.read_bytes())


# ---------------------------------------------------------------------------------------
# CheckedNet: inputs from DummyData are checked as those from Input


SHAPE_CASES = {
    "dummy channel mismatch": (
        cases.dummy_channel_mismatch,
        r"raised NetCheckError: Passoc layer 'dist': superpixel features \(bottom 1\) must be "
        r"1 x 3 x 1 x 6 for a 2x3 grid and 3-channel pixel features, got 1 x 4 x 1 x 6"),
    "dummy size mismatch": (
        cases.dummy_size_mismatch,
        r"raised NetCheckError: Passoc layer 'dist': the cell map \(bottom 2\) must be "
        r"1 x 1 x 5 x 7, got 1 x 1 x 6 x 7"),
    "dummy K mismatch": (
        cases.dummy_k_mismatch,
        r"raised NetCheckError: Passoc layer 'dist': superpixel features \(bottom 1\) must be "
        r"1 x 3 x 1 x 6 for a 2x3 grid .* got 1 x 3 x 1 x 5"),
    "dummy id out of range": (
        cases.dummy_id_out_of_range,
        r"raised NetCheckError: Passoc layer 'dist': initial cells in 'cells' \(made by a "
        r"DummyData layer\): 35 value\(s\) outside \[0, 6\), e.g. 6 at index \(0, 0, 0, 0\)"),
    "dummy fractional id": (
        cases.dummy_fractional_id,
        r"raised NetCheckError: Passoc layer 'dist': initial cells in 'cells' \(made by a "
        r"DummyData layer\): 35 value\(s\) are not whole numbers \(ids must be\), e.g. 2.5 "
        r"at index \(0, 0, 0, 0\)"),
    "dummy random ids": (
        cases.dummy_random_ids,
        r"raised NetCheckError: Passoc layer 'dist': initial cells in 'cells' \(made by a "
        r"DummyData layer\): 35 value\(s\) are not whole numbers .*"),
    "dummy valid ids run": (
        cases.dummy_valid_ids_run,
        r"ok"),
    "dummy legacy dims missing": (
        cases.dummy_legacy_dims_missing,
        r"raised NetCheckError: DummyData layer 'cells': width must be given once or once "
        r"per top \(1\), got 0"),
    "dummy without shape": (
        cases.dummy_without_shape,
        r"raised NetCheckError: DummyData layer 'cells': dummy_data_param needs a shape for "
        r"its tops"),
    "input negative size": (
        cases.input_negative_size,
        r"raised NetCheckError: Input layer 'data': top 'data' has a negative size: "
        r"1 x -3 x 5 x 5"),
    "input fractional id": (
        cases.input_fractional_id,
        r"raised NetCheckError: Passoc layer 'dist': initial cells in 'cells': 1 value\(s\) "
        r"are not whole numbers \(ids must be\), e.g. 2.5 at index \(0, 0, 2, 3\)"),
    "ids through a reshape": (
        cases.ids_through_a_reshape,
        r"raised NetCheckError: Passoc layer 'dist': initial cells in 'cells' \(made by a "
        r"Reshape layer\): 35 value\(s\) outside \[0, 6\), e.g. 7 .*"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(SHAPE_CASES))
def test_checked_net_catches(case):
    function, expected = SHAPE_CASES[case]
    line = outcome(function)
    assert re.fullmatch(expected, line), line


# ---------------------------------------------------------------------------------------
# Blob sizes: Caffe's INT_MAX count, and memory


SIZE_CASES = {
    "input over INT_MAX": (
        cases.input_over_int_max,
        r"raised NetTooLargeError: Input layer 'big': top 'big' would be 1 x 1 x 50000 x "
        r"50000 = 2,500,000,000 values, over Caffe's limit of 2,147,483,647 per blob "
        r"\(INT_MAX\); use a smaller input"),
    "im2col buffer over INT_MAX": (
        cases.im2col_buffer_over_int_max,
        r"raised NetTooLargeError: Convolution layer 'conv': its im2col buffer would be "
        r"1800 x 1200 x 1600 = 3,456,000,000 values, over Caffe's limit .*"),
    "reshape to over INT_MAX": (
        cases.reshape_to_over_int_max,
        r"raised NetTooLargeError: Convolution layer 'conv': top 'conv' would be 1 x 100000 x "
        r"150 x 150 = 2,250,000,000 values, over Caffe's limit .*"),
    "more than the memory": (
        cases.more_than_the_memory,
        r"raised NetTooLargeError: the net's blobs need 1490.1 GiB \(1490.1 GiB more than "
        r"now\), only \d+\.\d GiB of memory is available; largest: 'big0' 1 x 2000 x 1000 x "
        r"1000, .*"),
    "SLIC net's features over INT_MAX": (
        cases.slic_net_features_over_int_max,
        r"raised NetTooLargeError: Input layer 'trans_features': top 'trans_features' would "
        r"be 1 x 20 x 9000 x 12000 = 2,160,000,000 values, over Caffe's limit of "
        r"2,147,483,647 per blob \(INT_MAX\); use a smaller input"),
    # Such photos run, in tiles; the nets are checked before the work.
    "superpixels of a 1200x1600 photo with too little memory, deep": (
        (cases.photo_with_too_little_memory, "deep", 2**27),
        r"raised NetTooLargeError: a 1200x1600 image is too large for the SSN net: the net's "
        r"blobs need 0\.2 GiB \(0\.2 GiB more than now\), only 0\.1 GiB of memory is "
        r"available; largest: 'trans_features' 1 x 20 x 1200 x 1600, .*"),
    "superpixels of a 1200x1600 photo with too little memory, pixel": (
        (cases.photo_with_too_little_memory, "pixel", 2**25),
        r"raised NetTooLargeError: a 1200x1600 image is too large for the SSN net: the net's "
        r"blobs need 0\.1 GiB \(0\.1 GiB more than now\), only 0\.0 GiB of memory is "
        r"available; largest: 'pixel_features' 1 x 5 x 1200 x 1600, .*"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(SIZE_CASES))
def test_blob_size_checks(case):
    call, expected = SIZE_CASES[case]
    line = outcome(*call) if isinstance(call, tuple) else outcome(call)
    assert re.fullmatch(expected, line), line


# ---------------------------------------------------------------------------------------
# Weights files


def damage_model(model: caffe_pb2.NetParameter, how: str) -> bytes:
    layer = next(layer for layer in model.layer if layer.blobs)
    data = model.SerializeToString()
    if how == "shape without data":
        del layer.blobs[0].data[:]
    elif how == "NaN":
        layer.blobs[0].data[4] = math.nan
    elif how == "inf":
        layer.blobs[1].data[0] = -math.inf
    elif how == "truncated":
        return data[:len(data) // 2]
    elif how == "empty":
        return b""
    elif how == "random":
        return np.random.default_rng(5).integers(0, 256, 300, dtype=np.uint8).tobytes()
    elif how == "weights for a layer without any":
        extra = model.layer.add(name="out", type="ReLU")
        extra.blobs.add().CopyFrom(layer.blobs[1])
    return model.SerializeToString()


WEIGHT_CASES = {
    "shape without data": r"raised NetCheckError: \S+: layer conv blob 0 has shape "
                          r"3 x 2 x 3 x 3 \(54 values\) but holds 0: the file is truncated or "
                          r"corrupt",
    "NaN": r"raised NetCheckError: \S+: layer conv blob 0 holds 1 NaN or infinite value\(s\): "
           r"the model diverged or the file is corrupt",
    "inf": r"raised NetCheckError: \S+: layer conv blob 1 holds 1 NaN or infinite value\(s\): "
           r"the model diverged or the file is corrupt",
    "truncated": r"raised NetCheckError: \S+ is not a Caffe model \(.caffemodel\), or is "
                 r"truncated: .*",
    "empty": r"raised NetCheckError: \S+ is empty \(0 bytes\): not a Caffe model "
             r"\(.caffemodel\)",
    "random": r"raised NetCheckError: \S+ (is not a Caffe model \(.caffemodel\), or is "
              r"truncated: .*|holds no layers: .*)",
    "weights for a layer without any": r"raised NetCheckError: \S+: layer out has 1 weight "
                                       r"blob\(s\), the network's layer of that name has none",
}


@pytest.mark.slow
@pytest.mark.parametrize("how", sorted(WEIGHT_CASES))
def test_bad_weights_file(tmp_path, how):
    model = conv_model(tmp_path / "good.caffemodel")
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(damage_model(model, how))
    line = outcome(cases.conv_net_with_weights, bad)
    assert re.fullmatch(WEIGHT_CASES[how], line), line


def test_rewritten_weights_file_is_read_again(tmp_path):
    from ssn.inference import BUNDLED_WEIGHTS, superpixels
    image = np.random.default_rng(3).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    weights = tmp_path / "model.caffemodel"
    shutil.copy(BUNDLED_WEIGHTS, weights)
    first = superpixels(image, 12, num_steps=3, weights=weights, features="deep",
                        enforce_connectivity=False)
    model = caffe_pb2.NetParameter.FromString(weights.read_bytes())
    for layer in model.layer:
        if layer.name == "Convolution7":
            rng = np.random.default_rng(4)
            layer.blobs[0].data[:] = rng.normal(0, 1, len(layer.blobs[0].data)).tolist()
    changed = model.SerializeToString()
    weights.write_bytes(changed)  # rewritten in place: same path, same size
    (tmp_path / "copy.caffemodel").write_bytes(changed)
    again = superpixels(image, 12, num_steps=3, weights=weights, features="deep",
                        enforce_connectivity=False)
    fresh = superpixels(image, 12, num_steps=3, weights=tmp_path / "copy.caffemodel",
                        features="deep",
                        enforce_connectivity=False)
    np.testing.assert_array_equal(again, fresh)
    assert not np.array_equal(again, first)


# ---------------------------------------------------------------------------------------
# Images


@pytest.mark.parametrize("image, expected", [
    (np.full((20, 30, 3), 300, np.int32),
     "int32 images must hold 8-bit values in 0..255, got 300..300 (use uint16 for 16-bit "
     "images, or floats in [0, 1])"),
    (np.full((20, 30), -1, np.int64),
     "int64 images must hold 8-bit values in 0..255, got -1..-1 (use uint16 for 16-bit "
     "images, or floats in [0, 1])"),
], ids=["int32 300", "int64 negative"])
def test_integer_image_out_of_range(image, expected):
    from ssn.inference import superpixels
    with pytest.raises(ValueError) as error:
        superpixels(image, 6, features="pixel")
    assert str(error.value) == expected


def test_integer_image_in_range_is_8_bit():
    from ssn.inference import as_rgb
    image = np.arange(6 * 5 * 3).reshape(6, 5, 3).astype(np.int32)
    np.testing.assert_array_equal(as_rgb(image), as_rgb(image.astype(np.uint8)))


# ---------------------------------------------------------------------------------------
# Training


def training_files(folder: Path, max_iter: int = 8, snapshot: int = 3,
                   data_root: Path = SAMPLE, extra_layer: str = "") -> Path:
    """A tiny solver and train net on the sample's train split (4 images, batch 2)."""
    from ssn.nets.generators import SSNConfig, train_net
    from ssn.nets.prototxt import PrototxtOptions, solver
    config = SSNConfig(height=41, width=41, grid_request=16, num_steps=2, feature_dim=8,
                       batch_size=2, num_label_channels=8,
                       data=dict(phase="train", workers=1, prefetch=2,
                                 data_root=str(data_root)))
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "net.prototxt").write_text(text_format.MessageToString(train_net(config))
                                         + extra_layer)
    options = PrototxtOptions(base_lr=1e-3, max_iter=max_iter, snapshot=snapshot,
                              snapshot_prefix=str(folder / "snap" / "ssn"))
    param = solver(options, str(folder / "net.prototxt"))
    del param.test_iter[:]
    param.ClearField("test_interval")
    (folder / "solver.prototxt").write_text(text_format.MessageToString(param))
    return folder / "solver.prototxt"


def train_tool(*args, cwd: Path = REPO, env: dict | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / "train.py"), *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=timeout,
                          env=env or environment())


def losses(log: Path) -> dict[int, float]:
    with open(log) as stream:
        return {int(row["iteration"]): float(row["loss"]) for row in csv.DictReader(stream)}


def snapshot_names(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("ssn_iter"))


@pytest.fixture(scope="module")
def reference_run(tmp_path_factory):
    """An uninterrupted 8-iteration run with snapshots every 3: its folder and losses."""
    folder = tmp_path_factory.mktemp("reference")
    result = train_tool("--solver", training_files(folder))
    assert result.returncode == 0, result.stderr[-3000:]
    return folder, losses(folder / "snap" / "ssn_loss.csv"), result.stderr


@pytest.mark.slow
def test_final_snapshot_is_written(reference_run):
    folder, _, stderr = reference_run
    assert snapshot_names(folder / "snap") == [
        f"ssn_iter_{i}.{kind}" for i in (3, 6, 8) for kind in ("caffemodel", "json", "solverstate")]
    assert f"final snapshot: {folder / 'snap' / 'ssn_iter_8.caffemodel'}" in stderr
    assert not list((folder / "snap").glob(".ssn-snapshot-*"))  # the staging folder is gone


@pytest.mark.slow
def test_snapshots_name_their_model_relative_to_themselves(reference_run):
    folder, _, _ = reference_run
    state = caffe_pb2.SolverState.FromString(
        (folder / "snap" / "ssn_iter_6.solverstate").read_bytes())
    assert (state.iter, state.learned_net) == (6, "ssn_iter_6.caffemodel")


@pytest.mark.slow
def test_resume_continues_the_data_sequence(tmp_path, reference_run):
    _, expected, _ = reference_run
    solver = training_files(tmp_path)
    assert train_tool("--solver", solver, "--max-iter", 5).returncode == 0
    result = train_tool("--solver", solver, "--resume",
                        tmp_path / "snap" / "ssn_iter_3.solverstate")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "dropped 2 row(s) after iteration 3" in result.stderr
    got = losses(tmp_path / "snap" / "ssn_loss.csv")
    assert list(got) == list(range(1, 9))
    np.testing.assert_allclose([got[i] for i in got], [expected[i] for i in got], rtol=1e-5)


@pytest.mark.slow
def test_moved_run_folder_resumes(tmp_path, reference_run):
    folder, expected, _ = reference_run
    moved = tmp_path / "elsewhere"
    shutil.copytree(folder / "snap", moved)
    solver = training_files(tmp_path / "new")
    result = train_tool("--solver", solver, "--resume", moved / "ssn_iter_6.solverstate",
                        "--snapshot-prefix", tmp_path / "new" / "snap" / "ssn",
                        cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "resumed from" in result.stderr and "at iteration 6" in result.stderr
    got = losses(tmp_path / "new" / "snap" / "ssn_loss.csv")
    np.testing.assert_allclose([got[7], got[8]], [expected[7], expected[8]], rtol=1e-5)


def bad_state(snap: Path, how: str) -> Path:
    """Damage the iteration-6 snapshot in ``snap``, a copy of the reference run's folder."""
    state, model = snap / "ssn_iter_6.solverstate", snap / "ssn_iter_6.caffemodel"
    data = state.read_bytes()
    if how == "truncated state":
        state.write_bytes(data[:len(data) // 3])
    elif how == "empty state":
        state.write_bytes(b"")
    elif how == "random state":
        state.write_bytes(np.random.default_rng(1).integers(0, 256, 999, np.uint8).tobytes())
    elif how == "missing model":
        model.unlink()
    elif how == "truncated model":
        model.write_bytes(model.read_bytes()[:5000])
    elif how == "model with NaN":
        net = caffe_pb2.NetParameter.FromString(model.read_bytes())
        next(layer for layer in net.layer if layer.blobs).blobs[0].data[0] = math.nan
        model.write_bytes(net.SerializeToString())
    elif how == "history of another solver":
        proto = caffe_pb2.SolverState.FromString(data)
        del proto.history[len(proto.history) // 2:]  # SGD keeps one history blob, Adam two
        state.write_bytes(proto.SerializeToString())
    elif how == "history of the net with the normaliser chain":
        # Before the label loss renormalised inside LossWithoutSoftmax, its chain's fixed
        # 1x1 sum convolution (Convolution10, the last layer with parameters) had a weight
        # and a bias, each with Adam's two history blobs.
        proto = caffe_pb2.SolverState.FromString(data)
        moments = [list(proto.history[:len(proto.history) // 2]),
                   list(proto.history[len(proto.history) // 2:])]
        del proto.history[:]
        for kept in moments:
            proto.history.extend(kept)
            for shape in ((1, 8, 1, 1), (1,)):
                proto.history.add().CopyFrom(caffe_pb2.BlobProto(
                    shape=caffe_pb2.BlobShape(dim=shape), data=[0.0] * math.prod(shape)))
        state.write_bytes(proto.SerializeToString())
    elif how == "history of another net":
        proto = caffe_pb2.SolverState.FromString(data)
        proto.history[0].shape.dim[0] += 1
        proto.history[0].data.extend([0.0] * math.prod(proto.history[0].shape.dim[1:]))
        state.write_bytes(proto.SerializeToString())
    elif how == "HDF5 state":
        state = state.with_suffix(".h5")
        state.write_bytes(b"\x89HDF\r\n\x1a\n")
    return state


STATE_CASES = {
    "truncated state": r"\S+ is not a solver state \(.solverstate\), or is truncated: .*",
    "empty state": r"\S+ is empty \(0 bytes\): not a solver state \(.solverstate\)",
    "random state": r"\S+ (is not a solver state \(.solverstate\), or is truncated: .*"
                    r"|names no iteration or no model: .*)",
    "missing model": r"\S+ names its model ssn_iter_6.caffemodel, which is not there \(looked "
                     r"for \S+/snap/ssn_iter_6.caffemodel, ssn_iter_6.caffemodel\); keep the "
                     r".caffemodel beside its .solverstate",
    "truncated model": r"\S+: its model does not fit this net: \S+ is not a Caffe model "
                       r"\(.caffemodel\), or is truncated: .*",
    "model with NaN": r"\S+: its model does not fit this net: \S+: layer Convolution1 blob 0 "
                      r"holds 1 NaN or infinite value\(s\): .*",
    "history of another solver": r"\S+ holds 32 history blobs; the Adam solver of this net "
                                 r"keeps 64: it is from another net or solver",
    "history of the net with the normaliser chain": r"\S+ holds 68 history blobs; the Adam "
                                                    r"solver of this net keeps 64: it is from "
                                                    r"another net or solver",
    "history of another net": r"\S+: history blob 0 is \(65, 5, 3, 3\), this net's parameter "
                              r"is \(64, 5, 3, 3\): it is from another net",
    "HDF5 state": r"\S+: HDF5 solver states are not supported; resume from a .solverstate "
                  r"\(snapshot_format: BINARYPROTO\)",
}


@pytest.mark.slow
@pytest.mark.parametrize("how", sorted(STATE_CASES))
def test_bad_snapshot_is_a_clear_error(tmp_path, reference_run, how):
    folder, _, _ = reference_run
    shutil.copytree(folder / "snap", tmp_path / "snap")
    state = bad_state(tmp_path / "snap", how)
    result = train_tool("--solver", training_files(tmp_path / "solver"), "--resume", state)
    assert result.returncode == 2, result.stderr[-3000:]
    message = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"ssn-train: error: " + STATE_CASES[how], message), message


@pytest.mark.slow
@pytest.mark.parametrize("how", ["NaN", "other net"])
def test_bad_initial_weights_are_a_clear_error(tmp_path, reference_run, how):
    folder, _, _ = reference_run
    weights = tmp_path / "w.caffemodel"
    if how == "NaN":
        net = caffe_pb2.NetParameter.FromString(
            (folder / "snap" / "ssn_iter_3.caffemodel").read_bytes())
        next(layer for layer in net.layer if layer.blobs).blobs[0].data[2] = math.inf
        weights.write_bytes(net.SerializeToString())
        expected = (r"\S+: layer \S+ blob 0 holds 1 NaN or infinite value\(s\): the model "
                    r"diverged or the file is corrupt")
    else:
        conv_model(weights)
        expected = r"\S+ has no weights for layers .*: it is not a model of this network"
    result = train_tool("--solver", training_files(tmp_path), "--weights", weights)
    assert result.returncode == 2, result.stderr[-3000:]
    assert re.fullmatch(r"ssn-train: error: " + expected, result.stderr.strip().splitlines()[-1])
    assert not (tmp_path / "snap" / "ssn_loss.csv").exists()


SOLVER_CASES = {
    "snapshot folder is a file": r"the snapshot folder \S+/file is a file, not a folder",
    "snapshot folder under a file": r"cannot write to the snapshot folder \S+/file/sub: "
                                    r"Not a directory",
    "net file missing": r"\S+solver.prototxt: its net \S+/net.prototxt was not found",
    "solver does not parse": r"\S+solver.prototxt is not a solver prototxt: .*",
    "solver missing": r"solver not found: \S+/none.prototxt",
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(SOLVER_CASES))
def test_bad_solver_or_snapshot_folder(tmp_path, case):
    solver = training_files(tmp_path)
    args = ["--solver", solver, "--max-iter", 1]
    (tmp_path / "file").write_text("not a folder")
    if case == "snapshot folder is a file":
        args += ["--snapshot-prefix", tmp_path / "file" / "ssn"]
    elif case == "snapshot folder under a file":
        args += ["--snapshot-prefix", tmp_path / "file" / "sub" / "ssn"]
    elif case == "net file missing":
        (tmp_path / "net.prototxt").unlink()
    elif case == "solver does not parse":
        solver.write_text("net: 'x'\nbase_lr: oops\n")
    else:
        args[1] = tmp_path / "none.prototxt"
    result = train_tool(*args)
    assert result.returncode == 2, result.stderr[-3000:]
    message = result.stderr.strip().splitlines()[-1]
    assert re.fullmatch(r"ssn-train: error: " + SOLVER_CASES[case], message), message


@pytest.mark.slow
def test_an_error_mid_training_writes_the_last_completed_iteration(tmp_path):
    layer = ('layer { name: "fault" type: "Python" bottom: "img" top: "fault" '
             'python_param { module: "fault_layer" layer: "FaultLayer" param_str: "5" } }\n')
    solver = training_files(tmp_path, max_iter=20, snapshot=3, extra_layer=layer)
    result = train_tool("--solver", solver, env=environment(REPO / "tests"))
    assert result.returncode == 1, result.stderr[-3000:]
    assert "training stopped at iteration 4 by RuntimeError: a fault on forward 5" in \
        result.stderr
    assert "last completed iteration snapshot: " in result.stderr
    assert snapshot_names(tmp_path / "snap") == [
        f"ssn_iter_{i}.{kind}" for i in (3, 4) for kind in ("caffemodel", "json", "solverstate")]
    assert list(losses(tmp_path / "snap" / "ssn_loss.csv")) == [1, 2, 3, 4]


def corrupt_copy(folder: Path, broken: dict[str, bytes]) -> Path:
    """A copy of the sample data with the given files (relative paths) overwritten."""
    root = folder / "data"
    shutil.copytree(SAMPLE, root)
    for name, content in broken.items():
        (root / name).write_bytes(content)
    return root


@pytest.mark.slow
def test_unreadable_training_images_are_reported_and_skipped(tmp_path, reference_run):
    jpg = (SAMPLE / "images" / "train" / "9010.jpg").read_bytes()
    root = corrupt_copy(tmp_path, {"images/train/9010.jpg": jpg[:len(jpg) // 2],
                                   "groundTruth/train/9020.mat": b""})
    solver = training_files(tmp_path, data_root=root)
    result = train_tool("--solver", solver)
    assert result.returncode == 0, result.stderr[-3000:]
    for image_id in ("9010", "9020"):
        assert len(re.findall(rf"skipping training image \S+/images/train/{image_id}.jpg "
                              r"\(or its ground truth\): \w+", result.stderr)) == 1
    assert list(losses(tmp_path / "snap" / "ssn_loss.csv")) == list(range(1, 9))
    # The skip is deterministic: a second run computes the same losses.
    again = training_files(tmp_path / "again", data_root=root)
    assert train_tool("--solver", again).returncode == 0
    assert losses(tmp_path / "again" / "snap" / "ssn_loss.csv") == \
        losses(tmp_path / "snap" / "ssn_loss.csv")


@pytest.mark.slow
def test_too_few_readable_images_stop_with_a_snapshot(tmp_path):
    root = corrupt_copy(tmp_path, {f"images/train/{i}.jpg": b"" for i in (9000, 9010, 9020)})
    result = train_tool("--solver", training_files(tmp_path, data_root=root))
    assert result.returncode == 2, result.stderr[-3000:]
    assert result.stderr.strip().splitlines()[-1] == (
        "ssn-train: error: only 1 of the 4 images of split 'train' are readable, fewer than the "
        "batch size 2; unreadable: 9000, 9010, 9020")
    assert snapshot_names(tmp_path / "snap") == ["ssn_iter_0.caffemodel", "ssn_iter_0.json",
                                                  "ssn_iter_0.solverstate"]


def test_no_room_for_a_snapshot_leaves_no_partial_file(tmp_path, monkeypatch):
    from ssn.training import snapshots
    from ssn.training import solver as solver_module
    real = shutil.disk_usage

    def full(path):
        return real(path)._replace(free=1000)
    monkeypatch.setattr(snapshots.shutil, "disk_usage", full)
    with pytest.raises(OSError, match=r"no room for the snapshot of iteration 3 in \S+: it "
                                      r"needs about \d+\.\d MiB, 0.0 MiB are free"):
        solver_module.train(training_files(tmp_path))
    assert snapshot_names(tmp_path / "snap") == []
    assert [p.name for p in (tmp_path / "snap").iterdir()] == ["ssn_loss.csv"]


def check_snapshots_are_whole(folder: Path) -> list[int]:
    """Every snapshot .solverstate in ``folder`` parses and names a whole model; their
    iterations. (A kill inside a write may leave a hidden temporary file, named
    .<stem>.<random>.tmp.solverstate: not a snapshot, and never renamed into one.)"""
    from ssn.nets.checked import read_caffemodel
    from ssn.training.solver import read_solverstate, snapshot_model
    iterations = []
    for path in sorted(folder.glob("ssn_iter_*.solverstate")):
        state = read_solverstate(path)
        read_caffemodel(snapshot_model(state, path))
        iterations.append(state.iter)
    return sorted(iterations)


def resume_latest(folder: Path, solver: Path) -> subprocess.CompletedProcess:
    latest = max(check_snapshots_are_whole(folder / "snap"))
    return train_tool("--solver", solver, "--resume",
                      folder / "snap" / f"ssn_iter_{latest}.solverstate")


@pytest.mark.slow
def test_kill_inside_a_snapshot_keeps_the_previous_one(tmp_path, reference_run):
    _, expected, _ = reference_run
    solver = training_files(tmp_path)
    killed = subprocess.run([sys.executable, str(CASES_SCRIPT),
                             cases.kill_inside_the_iteration_6_snapshot.__name__, str(solver)],
                            capture_output=True, text=True, cwd=REPO, timeout=300,
                            env=environment())
    assert killed.returncode == -signal.SIGKILL
    assert check_snapshots_are_whole(tmp_path / "snap") == [3]
    assert list((tmp_path / "snap").glob(".ssn-snapshot-*"))  # the dead run's staging folder
    result = resume_latest(tmp_path, solver)
    assert result.returncode == 0, result.stderr[-3000:]
    assert not list((tmp_path / "snap").glob(".ssn-snapshot-*"))
    got = losses(tmp_path / "snap" / "ssn_loss.csv")
    assert list(got) == list(range(1, 9))
    np.testing.assert_allclose(list(got.values()), [expected[i] for i in got], rtol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("seed", [11, 12])
def test_sigkill_at_a_random_point_then_resume_gives_the_same_losses(tmp_path, seed,
                                                                    reference_run):
    _, expected, _ = reference_run
    rng = np.random.default_rng(seed)
    solver = training_files(tmp_path, snapshot=2)
    log = tmp_path / "snap" / "ssn_loss.csv"
    rows, delay = int(rng.integers(3, 8)), float(rng.uniform(0, 0.15))
    process = subprocess.Popen([sys.executable, str(REPO / "tools" / "train.py"),
                                "--solver", str(solver)], cwd=REPO,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and process.poll() is None and (
            not log.exists() or len(log.read_text().splitlines()) <= rows):
        time.sleep(0.02)
    time.sleep(delay)
    process.kill()
    process.wait(timeout=60)
    result = resume_latest(tmp_path, solver)
    assert result.returncode == 0, result.stderr[-3000:]
    got = losses(log)
    assert list(got) == list(range(1, 9))
    np.testing.assert_allclose(list(got.values()), [expected[i] for i in got], rtol=1e-5)


# ---------------------------------------------------------------------------------------
# Evaluation


@pytest.fixture
def eval_folders(tmp_path):
    """Images a, b (40 x 60, two halves) with .npy ground truths, and label maps of both."""
    images, truths, labels = (tmp_path / name for name in ("images", "gt", "labels"))
    for folder in (images, truths, labels):
        folder.mkdir()
    halves = np.zeros((40, 60), np.int32)
    halves[:, 30:] = 1
    image = np.where(halves[..., None] == 1, 200, 40).astype(np.uint8).repeat(3, axis=2)
    for stem in ("a", "b"):
        skio.imsave(images / f"{stem}.png", image, check_contrast=False)
        np.save(truths / f"{stem}.npy", halves)
        np.save(labels / f"{stem}.npy", halves)
    return tmp_path


def run_eval(folders: Path, *extra: str) -> int:
    from ssn.cli.eval import main
    return main(["--out", str(folders / "out"), "--images", str(folders / "images"),
                 "--gt", str(folders / "gt"), "--labels", f"L={folders / 'labels'}",
                 "--n-segments", "6", "--methods", "slic", *extra])


def read_rows(path: Path) -> list[dict]:
    with open(path) as stream:
        return list(csv.DictReader(stream))


LABEL_CASES = {
    "missing": (None, r"no label file \S+/labels/b.npy"),
    "empty": (b"", r"label file \S+/labels/b.npy is empty"),
    "wrong shape": (np.zeros((60, 40), np.int32), r"labels are \(60, 40\), the image is "
                                                   r"\(40, 60\)"),
    "not an array": (b"garbage", r"cannot read label file \S+/labels/b.npy: .*"),
    "fractional": (np.full((40, 60), 0.5), r"labels must be whole numbers, got fractions, NaN "
                                           r"or infinity"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(LABEL_CASES))
def test_bad_label_file_is_reported_and_the_rest_scored(eval_folders, case):
    content, expected = LABEL_CASES[case]
    path = eval_folders / "labels" / "b.npy"
    path.unlink()
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif content is not None:
        np.save(path, content)
    assert run_eval(eval_folders) == 1
    out = eval_folders / "out"
    rows = read_rows(out / "rows.csv")
    assert sorted((row["method"], row["image"]) for row in rows) == [
        ("L", "a"), ("SLIC", "a"), ("SLIC", "b")]
    (skipped,) = read_rows(out / "skipped.csv")
    assert (skipped["method"], skipped["image"]) == ("L", "b")
    assert re.fullmatch(expected, skipped["reason"]), skipped["reason"]
    assert {row["method"] for row in json.loads((out / "summary.json").read_text())} == \
        {"L", "SLIC"}


GT_CASES = {
    "empty ground truth": (b"", r"ground truth \S+/gt/b.npy is empty"),
    "unreadable ground truth": (b"garbage", r"cannot read ground truth \S+/gt/b.npy "
                                            r"\(ValueError: .*\)"),
    "ground truth of another size": (np.zeros((20, 30), np.int32),
                                     r"a ground-truth segmentation is \(20, 30\), the image is "
                                     r"\(40, 60\)"),
}


@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(GT_CASES))
def test_bad_ground_truth_is_reported_and_the_rest_scored(eval_folders, case):
    content, expected = GT_CASES[case]
    path = eval_folders / "gt" / "b.npy"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        np.save(path, content)
    assert run_eval(eval_folders) == 1
    rows = read_rows(eval_folders / "out" / "rows.csv")
    assert sorted((row["method"], row["image"]) for row in rows) == [("L", "a"), ("SLIC", "a")]
    (skipped,) = read_rows(eval_folders / "out" / "skipped.csv")
    assert (skipped["method"], skipped["image"]) == ("*", "b")
    assert re.fullmatch(expected, skipped["reason"]), skipped["reason"]


@pytest.mark.slow
def test_corrupt_image_is_reported_and_the_rest_scored(eval_folders):
    (eval_folders / "images" / "b.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    assert run_eval(eval_folders) == 1
    (skipped,) = read_rows(eval_folders / "out" / "skipped.csv")
    assert (skipped["method"], skipped["image"]) == ("*", "b")
    assert len(read_rows(eval_folders / "out" / "rows.csv")) == 2


@pytest.mark.slow
def test_image_without_ground_truth_is_reported(eval_folders, caplog):
    (eval_folders / "gt" / "b.npy").unlink()
    assert run_eval(eval_folders) == 0
    assert re.search(r"no ground truth for b.png in \S+/gt \(<stem>.mat/.npy/.png/.tif/.tiff\): "
                     r"not evaluated", caplog.text)
    assert [row["image"] for row in read_rows(eval_folders / "out" / "rows.csv")] == ["a", "a"]
    assert read_rows(eval_folders / "out" / "skipped.csv") == []


@pytest.mark.slow
def test_bsds_image_without_ground_truth_is_reported(tmp_path, caplog):
    from ssn.cli.eval import main
    root = corrupt_copy(tmp_path, {})
    (root / "groundTruth" / "val" / "9011.mat").unlink()
    assert main(["--out", str(tmp_path / "out"), "--data-root", str(root), "--n-segments",
                 "6", "--methods", "slic"]) == 0
    assert re.search(r"no ground truth for 9011 \(no \S+/groundTruth/val/9011.mat\): not "
                     "evaluated", caplog.text)
    images = {row["image"] for row in read_rows(tmp_path / "out" / "rows.csv")}
    assert images == {"9001", "9021"}


@pytest.mark.parametrize("case", ["a file", "under a file"])
def test_bad_output_folder_stops_before_the_work(eval_folders, case, caplog, monkeypatch):
    from ssn.evaluation import runs
    monkeypatch.setattr(runs, "evaluate", lambda *args: pytest.fail("evaluated"))
    (eval_folders / "file").write_text("x")
    out = eval_folders / "file" / ("sub" if case == "under a file" else "")
    assert run_eval(eval_folders, "--out", str(out)) == 2
    expected = (r"the output folder \(--out\) \S+/file is a file, not a folder"
                if case == "a file" else
                r"cannot write to the output folder \(--out\) \S+/file/sub: Not a directory")
    assert re.search(expected, caplog.text), caplog.text


def test_rows_are_on_disk_as_they_are_computed(eval_folders, monkeypatch):
    from ssn.evaluation import runs
    real, calls = runs.evaluate, []

    def interrupted_on_the_third(*args):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)
    monkeypatch.setattr(runs, "evaluate", interrupted_on_the_third)
    assert run_eval(eval_folders) == 130  # Ctrl-C: the rows so far are kept
    rows = read_rows(eval_folders / "out" / "rows.csv")
    assert [(row["method"], row["image"]) for row in rows] == [("L", "a"), ("L", "b")]
    assert float(rows[0]["asa"]) == 1.0
