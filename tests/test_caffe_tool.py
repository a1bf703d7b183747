"""The `caffe` command-line tool in the venv knows the SSN layers and trains with them."""
import os
import subprocess
import sys
from pathlib import Path

CAFFE = Path(sys.prefix) / "bin" / "caffe"

NET = """
layer { name: "data" type: "DummyData" top: "img" top: "label"
  dummy_data_param {
    shape { dim: 2 dim: 3 dim: 9 dim: 11 } shape { dim: 2 dim: 1 dim: 9 dim: 11 }
    data_filler { type: "uniform" min: 0 max: 1 } data_filler { type: "constant" value: 1 } } }
layer { name: "feat" type: "PixelFeature" bottom: "img" top: "feat"
  pixel_feature_param { type: POSITION_AND_RGB pos_scale: 0.1 color_scale: 1 } }
layer { name: "conv" type: "Convolution" bottom: "feat" top: "conv"
  convolution_param { num_output: 4 kernel_size: 3 pad: 1
    weight_filler { type: "gaussian" std: 0.1 } } }
layer { name: "up" type: "Interp" bottom: "conv" top: "up" interp_param { zoom_factor: 2 } }
layer { name: "down" type: "Interp" bottom: "up" top: "down" interp_param { shrink_factor: 2 } }
layer { name: "prob" type: "Softmax" bottom: "down" top: "prob" }
layer { name: "loss" type: "LossWithoutSoftmax" bottom: "prob" bottom: "label" top: "loss" }
"""


def test_caffe_train_runs_a_net_of_ssn_layers(tmp_path):
    (tmp_path / "net.prototxt").write_text(NET)
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path / "net.prototxt"}"\nbase_lr: 0.1\nlr_policy: "fixed"\n'
        f'max_iter: 20\ndisplay: 1\nsnapshot_after_train: false\nsolver_mode: CPU\n')
    result = subprocess.run([str(CAFFE), "train", f"--solver={tmp_path / 'solver.prototxt'}"],
                            capture_output=True, text=True,
                            env=dict(os.environ, GLOG_minloglevel="0"), timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    losses = [float(line.rsplit("=", 1)[1].split()[0]) for line in result.stderr.splitlines()
              if "Train net output #0: loss =" in line]
    assert len(losses) == 20
    assert losses[-1] < losses[0]  # constant labels: the loss must fall
