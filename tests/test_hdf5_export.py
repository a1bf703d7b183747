"""The HDF5 exporter's files feed Caffe's HDF5Data layer in the generated train net."""
import os
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

from ssn.cli.export_hdf5 import main as export_main
from ssn.nets.weights import write_initial_weights

CAFFE = Path(sys.prefix) / "bin" / "caffe"


@pytest.mark.slow
def test_exported_data_trains_with_the_caffe_tool(tmp_path, sample_root):
    out = tmp_path / "h5"
    assert export_main(["--out", str(out), "--train-samples", "7", "--val-samples", "2",
                        "--per-file", "4", "--patch", "45", "--n-segments", "9",
                        "--num-label-channels", "6"]) == 0
    files = out.joinpath("train.txt").read_text().split()
    assert len(files) == 2
    with h5py.File(files[0]) as handle:
        assert handle["img"].shape == (4, 3, 45, 45)
        assert handle["problabel"].shape == (4, 6, 45, 45)
        onehot = handle["problabel"][...]
        labels = handle["label"][...]
    assert set(np.unique(onehot)) <= {0.0, 1.0}
    valid = labels[:, 0] != 255
    np.testing.assert_array_equal(onehot.argmax(1)[valid], labels[:, 0][valid])

    net = out / "ssn_train_val_hdf5.prototxt"
    from caffe.proto import caffe_pb2
    from google.protobuf import text_format
    weights = write_initial_weights(
        text_format.Parse(net.read_text().replace("batch_size: 6", "batch_size: 2"),
                          caffe_pb2.NetParameter()),
        {"img": (2, 3, 45, 45), "spixel_init": (2, 1, 45, 45),
         "feat_spixel_init": (2, 1, 45, 45), "label": (2, 1, 45, 45),
         "problabel": (2, 6, 45, 45)}, tmp_path / "init.caffemodel")
    solver = tmp_path / "solver.prototxt"
    solver.write_text(f'net: "{net}"\ntype: "Adam"\nbase_lr: 0.0001\nlr_policy: "fixed"\n'
                      'max_iter: 2\ndisplay: 1\nsnapshot_after_train: false\n'
                      'solver_mode: CPU\n')
    result = subprocess.run([str(CAFFE), "train", f"--solver={solver}",
                             f"--weights={weights}"], capture_output=True, text=True,
                            env=dict(os.environ, GLOG_minloglevel="0"),
                            timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Finetuning from" in result.stderr
    assert "Iteration 2, loss =" in result.stderr


def read_all(list_file: Path) -> list[dict[str, np.ndarray]]:
    """Every dataset of every file named in ``list_file``."""
    contents = []
    for name in list_file.read_text().split():
        with h5py.File(name) as handle:
            contents.append({key: handle[key][...] for key in handle})
    return contents


@pytest.mark.slow
def test_worker_processes_write_the_same_files_and_compression_is_optional(tmp_path,
                                                                           sample_root):
    common = ["--train-samples", "5", "--val-samples", "1", "--per-file", "2", "--patch",
              "33", "--n-segments", "4", "--num-label-channels", "5", "--no-net"]
    assert export_main(["--out", str(tmp_path / "one"), *common]) == 0
    assert export_main(["--out", str(tmp_path / "two"), "--jobs", "2", "--no-compress",
                        *common]) == 0
    one, two = read_all(tmp_path / "one" / "train.txt"), read_all(tmp_path / "two" / "train.txt")
    assert [len(c["img"]) for c in one] == [2, 2, 1]
    for first, second in zip(one, two, strict=True):
        for key in first:
            np.testing.assert_array_equal(first[key], second[key])
    assert not (tmp_path / "one" / "ssn_train_val_hdf5.prototxt").exists()
    with h5py.File((tmp_path / "two" / "train.txt").read_text().split()[0]) as handle:
        assert handle["img"].compression is None
    with h5py.File((tmp_path / "one" / "train.txt").read_text().split()[0]) as handle:
        assert handle["img"].compression == "gzip"


@pytest.mark.slow
def test_export_without_the_net_needs_no_pycaffe(tmp_path, sample_root):
    code = ("import sys; from ssn.cli.export_hdf5 import main; "
            f"main(['--out', {str(tmp_path)!r}, '--train-samples', '1', '--val-samples', '1', "
            "'--patch', '33', '--n-segments', '4', '--no-net']); "
            "assert 'caffe' not in sys.modules, 'caffe was imported'")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            env=dict(os.environ, SSN_DATA_ROOT=str(sample_root)), timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
