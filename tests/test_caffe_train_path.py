"""Caffe's own tools on the files we generate, as a Caffe user runs them.

`caffe train` from scratch, with --weights and resumed with --snapshot on the
files `ssn-make-prototxt --out` writes, run from another working directory;
`caffe time` on the train net; SSN nets fed by the stock ImageData layer and by
an LMDB that `convert_imageset` made.
"""
from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from skimage import io as skio

from ssn.bsds import DATA_ROOT_VARIABLE

BIN = Path(sys.prefix) / "bin"
CAFFE = BIN / "caffe"
LOSS_LINE = re.compile(r"Iteration (\d+).*?, loss = ([-+0-9.eEnaif]+)")
LABEL_LOSS_LINE = re.compile(r"Train net output #\d+: loss3 = ([-+0-9.eEnaif]+)")
TINY = ["--patch", "41", "--n-segments", "16", "--num-steps", "2", "--feature-dim", "8",
        "--batch-size", "2", "--base-lr", "0.001", "--snapshot", "3", "--max-iter", "6",
        "--test-interval", "1000"]


def run_tool(command: list, cwd: Path, env: dict | None = None, timeout: int = 300):
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True,
                            text=True, timeout=timeout,
                            env=dict(os.environ, GLOG_minloglevel="0", **(env or {})))
    assert result.returncode == 0, (result.stdout[-2000:], result.stderr[-4000:])
    return result


def losses_of(stderr: str) -> dict[int, float]:
    """Iteration -> total loss, from the lines Caffe's solver logs at each display."""
    return {int(match[1]): float(match[2]) for match in LOSS_LINE.finditer(stderr)}


@pytest.fixture
def generated(tmp_path, sample_root):
    """``ssn-make-prototxt --out nets --init-weights init.caffemodel`` run in one folder."""
    maker = tmp_path / "maker"
    maker.mkdir()
    result = run_tool([BIN / "ssn-make-prototxt", "--out", "nets", "--init-weights",
                       "init.caffemodel", "--display", "1", *TINY], cwd=maker)
    return maker, result.stdout


@pytest.mark.slow
def test_make_prototxt_makes_the_snapshot_folder_and_prints_the_commands(generated):
    maker, printed = generated
    solver = maker / "nets" / "ssn_solver.prototxt"
    text = solver.read_text()
    assert f'net: "{maker / "nets" / "ssn_train_val.prototxt"}"' in text
    assert f'snapshot_prefix: "{maker / "nets" / "models" / "ssn_bsds"}"' in text
    assert (maker / "nets" / "models").is_dir()
    assert f"caffe train --solver={solver} --weights={maker / 'init.caffemodel'}" in printed
    assert f"--snapshot={maker / 'nets' / 'models' / 'ssn_bsds'}_iter_<N>.solverstate" in printed
    assert "ssn-train --solver" in printed


@pytest.mark.slow
def test_caffe_train_from_scratch_with_weights_and_resumed(generated, tmp_path, sample_root):
    maker, _ = generated
    elsewhere = tmp_path / "elsewhere"  # Caffe runs from another working directory
    elsewhere.mkdir()
    solver = maker / "nets" / "ssn_solver.prototxt"
    prefix = maker / "nets" / "models" / "ssn_bsds"
    data = {DATA_ROOT_VARIABLE: str(sample_root)}

    log = run_tool([CAFFE, "train", f"--solver={solver}"], elsewhere, data).stderr
    scratch = losses_of(log)
    assert set(range(7)) <= set(scratch)
    values = list(scratch.values())
    assert all(math.isfinite(value) for value in values)
    assert len(set(values)) > 1
    # With the decoder at zero (no filler) the label loss is ln(50) = 3.912 throughout.
    label_losses = [float(value) for value in LABEL_LOSS_LINE.findall(log)]
    assert len(label_losses) >= 6 and max(label_losses) < 0.5 * math.log(50)
    assert (Path(f"{prefix}_iter_3.caffemodel").exists()
            and Path(f"{prefix}_iter_6.solverstate").exists())

    for stale in maker.glob("nets/models/*"):
        stale.unlink()
    weighted = losses_of(run_tool([CAFFE, "train", f"--solver={solver}",
                                   f"--weights={maker / 'init.caffemodel'}"], elsewhere,
                                  data).stderr)
    assert set(range(7)) <= set(weighted)
    assert all(math.isfinite(value) for value in weighted.values())

    resumed = run_tool([CAFFE, "train", f"--solver={solver}",
                        f"--snapshot={prefix}_iter_3.solverstate"], elsewhere, data).stderr
    assert "Resuming from" in resumed
    assert sorted(losses_of(resumed)) == [3, 4, 5, 6]
    assert all(math.isfinite(value) for value in losses_of(resumed).values())
    assert Path(f"{prefix}_iter_6.caffemodel").exists()


@pytest.mark.slow
def test_caffe_time_runs_on_the_generated_train_net(generated, sample_root):
    maker, _ = generated
    result = run_tool([CAFFE, "time", f"--model={maker / 'nets' / 'ssn_train_val.prototxt'}",
                       "--iterations=2"], maker, {DATA_ROOT_VARIABLE: str(sample_root)})
    assert "Average Forward-Backward:" in result.stderr


# A small SSN net on stock data layers: pixel features, a convolution, the
# Interp zoom and shrink, and the label loss on a per-pixel label map.
SEGMENTATION_NET = """
{data}
layer {{ name: "feat" type: "PixelFeature" bottom: "img" top: "feat"
  pixel_feature_param {{ type: POSITION_AND_RGB pos_scale: 0.1 color_scale: 0.01 }} }}
layer {{ name: "conv" type: "Convolution" bottom: "feat" top: "conv"
  convolution_param {{ num_output: 2 kernel_size: 3 pad: 1
    weight_filler {{ type: "gaussian" std: 0.1 }} }} }}
layer {{ name: "up" type: "Interp" bottom: "conv" top: "up" interp_param {{ zoom_factor: 2 }} }}
layer {{ name: "down" type: "Interp" bottom: "up" top: "down"
  interp_param {{ shrink_factor: 2 }} }}
layer {{ name: "prob" type: "Softmax" bottom: "down" top: "prob" }}
layer {{ name: "loss" type: "LossWithoutSoftmax" bottom: "prob" bottom: "label" top: "loss" }}
"""


def write_segmentation_pairs(folder: Path, count: int = 4, size: tuple = (13, 17)) -> Path:
    """``count`` images whose label is 1 where red beats blue, as PNG pairs and a list
    file of ``image 0`` lines per kind; returns the folder."""
    rng = np.random.default_rng(7)
    for kind in ("images", "labels"):
        (folder / kind).mkdir(parents=True)
    names = []
    for index in range(count):
        image = rng.integers(0, 256, size=size + (3,), dtype=np.uint8)
        label = (image[..., 0] > image[..., 2]).astype(np.uint8)
        skio.imsave(folder / "images" / f"{index}.png", image, check_contrast=False)
        skio.imsave(folder / "labels" / f"{index}.png", label, check_contrast=False)
        names.append(f"{index}.png")
    for kind in ("images", "labels"):
        (folder / f"{kind}.txt").write_text("".join(f"{name} 0\n" for name in names))
    return folder


def train_losses(tmp_path: Path, net_text: str, iterations: int = 30) -> list[float]:
    (tmp_path / "net.prototxt").write_text(net_text)
    (tmp_path / "solver.prototxt").write_text(
        f'net: "{tmp_path / "net.prototxt"}"\nbase_lr: 0.05\nlr_policy: "fixed"\n'
        f'type: "Adam"\nmax_iter: {iterations}\ndisplay: 1\n'
        'snapshot_after_train: false\nsolver_mode: CPU\n')
    result = run_tool([CAFFE, "train", f"--solver={tmp_path / 'solver.prototxt'}"], tmp_path)
    losses = losses_of(result.stderr)
    assert set(range(iterations)) <= set(losses)
    return [losses[i] for i in range(iterations)]


def test_caffe_trains_an_ssn_net_fed_by_image_data(tmp_path):
    pairs = write_segmentation_pairs(tmp_path / "pairs")
    data = "\n".join(
        f'layer {{ name: "{top}_data" type: "ImageData" top: "{top}" top: "{top}_class"\n'
        f'  image_data_param {{ source: "{pairs / kind}.txt" root_folder: "{pairs / kind}/"\n'
        f'    batch_size: 2 is_color: {"true" if top == "img" else "false"} }} }}\n'
        f'layer {{ name: "{top}_silence" type: "Silence" bottom: "{top}_class" }}'
        for top, kind in (("img", "images"), ("label", "labels")))
    losses = train_losses(tmp_path, SEGMENTATION_NET.format(data=data))
    assert all(math.isfinite(value) for value in losses)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


@pytest.mark.slow
def test_caffe_trains_an_ssn_net_fed_by_an_lmdb_from_convert_imageset(tmp_path):
    pairs = write_segmentation_pairs(tmp_path / "pairs")
    for kind, gray in (("images", []), ("labels", ["--gray"])):
        run_tool([BIN / "convert_imageset", *gray, "--backend=lmdb", f"{pairs / kind}/",
                  pairs / f"{kind}.txt", tmp_path / f"{kind}_lmdb"], tmp_path)
        assert (tmp_path / f"{kind}_lmdb" / "data.mdb").exists()
    data = "\n".join(
        f'layer {{ name: "{top}_data" type: "Data" top: "{top}" top: "{top}_class"\n'
        f'  data_param {{ source: "{tmp_path / kind}_lmdb" backend: LMDB batch_size: 2 }} }}\n'
        f'layer {{ name: "{top}_silence" type: "Silence" bottom: "{top}_class" }}'
        for top, kind in (("img", "images"), ("label", "labels")))
    losses = train_losses(tmp_path, SEGMENTATION_NET.format(data=data))
    assert all(math.isfinite(value) for value in losses)
    assert np.mean(losses[-5:]) < 0.8 * np.mean(losses[:5])


def test_the_stock_tools_are_installed():
    for tool in ("convert_imageset", "compute_image_mean", "extract_features",
                 "upgrade_net_proto_text"):
        assert os.access(BIN / tool, os.X_OK), tool
