"""Bad inputs and faults: each gives its exact, clear outcome and none aborts the interpreter.

Cases that reach Caffe, which ends the process on a failed CHECK, run in a
subprocess: a regression shows as a dead child, not a dead test run.
"""
from __future__ import annotations

import math
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from caffe.proto import caffe_pb2

REPO = Path(__file__).resolve().parent.parent
SAMPLE = REPO / "data" / "bsds_sample"

# ---------------------------------------------------------------------------------------
# Helpers


PRELUDE = '''
import numpy as np
import caffe
from caffe import layers as L
caffe.set_mode_cpu()
from ssn.nets.checked import CheckedNet


def report(action):
    try:
        action()
    except Exception as error:
        print(f"raised {type(error).__name__}: {error}")
    else:
        print("ok")


def dummy_passoc(feat=(1, 3, 5, 7), spix=(1, 3, 1, 6), cells=(1, 1, 5, 7), filler=None,
                 grid=(2, 3)):
    n = caffe.NetSpec()
    n.feat = L.DummyData(shape=dict(dim=list(feat)))
    n.spix = L.DummyData(shape=dict(dim=list(spix)))
    n.cells = L.DummyData(shape=dict(dim=list(cells)),
                          data_filler=filler or dict(type="constant", value=0))
    n.dist = L.Passoc(n.feat, n.spix, n.cells, spixel_feature2_param=dict(
        num_spixels_h=grid[0], num_spixels_w=grid[1]))
    return n.to_proto()


def input_passoc(cells_top=None):
    n = caffe.NetSpec()
    n.feat = L.Input(shape=dict(dim=[1, 3, 5, 7]))
    n.spix = L.Input(shape=dict(dim=[1, 3, 1, 6]))
    n.cells = L.Input(shape=dict(dim=[1, 1, 5, 7]))
    n.dist = L.Passoc(n.feat, n.spix, n.cells, spixel_feature2_param=dict(
        num_spixels_h=2, num_spixels_w=3))
    return n.to_proto()


def zeros(*shape):
    return np.zeros(shape, np.float32)
'''


def outcome(code: str, cwd: Path = REPO, timeout: float = 300) -> str:
    """The last line a snippet prints, run after PRELUDE in a fresh interpreter that
    must not die."""
    result = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
                            capture_output=True, text=True, cwd=cwd, timeout=timeout)
    assert result.returncode == 0, (
        f"the interpreter died (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return result.stdout.strip().splitlines()[-1]


def conv_model(path: Path, channels: int = 2) -> caffe_pb2.NetParameter:
    """Save the weights of a one-convolution net; return them parsed."""
    outcome(f'''
        n = caffe.NetSpec()
        n.data = L.Input(shape=dict(dim=[1, {channels}, 5, 5]))
        n.conv = L.Convolution(n.data, num_output=3, kernel_size=3,
                               weight_filler=dict(type="gaussian", std=0.1))
        CheckedNet(n.to_proto()).net.save({str(path)!r})
        print("saved")
    ''')
    return caffe_pb2.NetParameter.FromString(path.read_bytes())


CONV_NET = '''
n = caffe.NetSpec()
n.data = L.Input(shape=dict(dim=[1, 2, 5, 5]))
n.conv = L.Convolution(n.data, num_output=3, kernel_size=3)
n.out = L.ReLU(n.conv)
'''


# ---------------------------------------------------------------------------------------
# CheckedNet: inputs from DummyData are checked as those from Input


SHAPE_CASES = {
    "dummy channel mismatch": (
        "report(lambda: CheckedNet(dummy_passoc(spix=(1, 4, 1, 6))))",
        r"raised NetCheckError: Passoc layer 'dist': superpixel features \(bottom 1\) must be "
        r"1 x 3 x 1 x 6 for a 2x3 grid and 3-channel pixel features, got 1 x 4 x 1 x 6"),
    "dummy size mismatch": (
        "report(lambda: CheckedNet(dummy_passoc(cells=(1, 1, 6, 7))))",
        r"raised NetCheckError: Passoc layer 'dist': the cell map \(bottom 2\) must be "
        r"1 x 1 x 5 x 7, got 1 x 1 x 6 x 7"),
    "dummy K mismatch": (
        "report(lambda: CheckedNet(dummy_passoc(spix=(1, 3, 1, 5))))",
        r"raised NetCheckError: Passoc layer 'dist': superpixel features \(bottom 1\) must be "
        r"1 x 3 x 1 x 6 for a 2x3 grid .* got 1 x 3 x 1 x 5"),
    "dummy id out of range": (
        "report(lambda: CheckedNet(dummy_passoc(filler=dict(type='constant', value=6)))"
        ".forward())",
        r"raised NetCheckError: Passoc layer 'dist': initial cells in 'cells' \(made by a "
        r"DummyData layer\): 35 value\(s\) outside \[0, 6\), e.g. 6 at index \(0, 0, 0, 0\)"),
    "dummy fractional id": (
        "report(lambda: CheckedNet(dummy_passoc(filler=dict(type='constant', value=2.5)))"
        ".forward())",
        r"raised NetCheckError: Passoc layer 'dist': initial cells in 'cells' \(made by a "
        r"DummyData layer\): 35 value\(s\) are not whole numbers \(ids must be\), e.g. 2.5 "
        r"at index \(0, 0, 0, 0\)"),
    "dummy random ids": (
        "report(lambda: CheckedNet(dummy_passoc(filler=dict(type='uniform', min=0, max=5)))"
        ".forward())",
        r"raised NetCheckError: Passoc layer 'dist': initial cells in 'cells' \(made by a "
        r"DummyData layer\): 35 value\(s\) are not whole numbers .*"),
    "dummy valid ids run": (
        "report(lambda: CheckedNet(dummy_passoc(filler=dict(type='constant', value=5)))"
        ".forward())",
        r"ok"),
    "dummy legacy dims missing": (
        '''
        n = caffe.NetSpec()
        n.cells = L.DummyData(num=1, channels=1, height=5)
        report(lambda: CheckedNet(n.to_proto()))''',
        r"raised NetCheckError: DummyData layer 'cells': width must be given once or once "
        r"per top \(1\), got 0"),
    "dummy without shape": (
        '''
        n = caffe.NetSpec()
        n.cells = L.DummyData()
        report(lambda: CheckedNet(n.to_proto()))''',
        r"raised NetCheckError: DummyData layer 'cells': dummy_data_param needs a shape for "
        r"its tops"),
    "input negative size": (
        '''
        n = caffe.NetSpec()
        n.data = L.Input(shape=dict(dim=[1, -3, 5, 5]))
        report(lambda: CheckedNet(n.to_proto()))''',
        r"raised NetCheckError: Input layer 'data': top 'data' has a negative size: "
        r"1 x -3 x 5 x 5"),
    "input fractional id": (
        '''
        cells = zeros(1, 1, 5, 7)
        cells[0, 0, 2, 3] = 2.5
        net = CheckedNet(input_passoc())
        report(lambda: net.forward(feat=zeros(1, 3, 5, 7), spix=zeros(1, 3, 1, 6),
                                   cells=cells))''',
        r"raised NetCheckError: Passoc layer 'dist': initial cells in 'cells': 1 value\(s\) "
        r"are not whole numbers \(ids must be\), e.g. 2.5 at index \(0, 0, 2, 3\)"),
    "ids through a reshape": (
        '''
        n = caffe.NetSpec()
        n.feat = L.Input(shape=dict(dim=[1, 3, 5, 7]))
        n.spix = L.Input(shape=dict(dim=[1, 3, 1, 6]))
        n.flat = L.Input(shape=dict(dim=[1, 35]))
        n.cells = L.Reshape(n.flat, reshape_param=dict(shape=dict(dim=[1, 1, 5, 7])))
        n.dist = L.Passoc(n.feat, n.spix, n.cells, spixel_feature2_param=dict(
            num_spixels_h=2, num_spixels_w=3))
        net = CheckedNet(n.to_proto())
        report(lambda: net.forward(flat=np.full((1, 35), 7.0)))''',
        r"raised NetCheckError: Passoc layer 'dist': initial cells in 'cells' \(made by a "
        r"Reshape layer\): 35 value\(s\) outside \[0, 6\), e.g. 7 .*"),
}


@pytest.mark.parametrize("case", sorted(SHAPE_CASES))
def test_checked_net_catches(case):
    code, expected = SHAPE_CASES[case]
    assert re.fullmatch(expected, outcome(code)), outcome(code)


# ---------------------------------------------------------------------------------------
# Blob sizes: Caffe's INT_MAX count, and memory


SIZE_CASES = {
    "input over INT_MAX": (
        '''
        n = caffe.NetSpec()
        n.big = L.Input(shape=dict(dim=[1, 1, 50000, 50000]))
        report(lambda: CheckedNet(n.to_proto()))''',
        r"raised NetTooLargeError: Input layer 'big': top 'big' would be 1 x 1 x 50000 x "
        r"50000 = 2,500,000,000 values, over Caffe's limit of 2,147,483,647 per blob "
        r"\(INT_MAX\); use a smaller input"),
    "im2col buffer over INT_MAX": (
        '''
        n = caffe.NetSpec()
        n.data = L.Input(shape=dict(dim=[1, 200, 1200, 1600]))
        n.conv = L.Convolution(n.data, num_output=1, kernel_size=3, pad=1)
        report(lambda: CheckedNet(n.to_proto()))''',
        r"raised NetTooLargeError: Convolution layer 'conv': its im2col buffer would be "
        r"1800 x 1200 x 1600 = 3,456,000,000 values, over Caffe's limit .*"),
    "reshape to over INT_MAX": (
        '''
        n = caffe.NetSpec()
        n.data = L.Input(shape=dict(dim=[1, 1, 10, 10]))
        n.conv = L.Convolution(n.data, num_output=100000, kernel_size=1)
        net = CheckedNet(n.to_proto())
        report(lambda: net.forward(data=np.zeros((1, 1, 150, 150))))''',
        r"raised NetTooLargeError: Convolution layer 'conv': top 'conv' would be 1 x 100000 x "
        r"150 x 150 = 2,250,000,000 values, over Caffe's limit .*"),
    "more than the memory": (
        '''
        n = caffe.NetSpec()
        for i in range(200):
            setattr(n, f"big{i}", L.Input(shape=dict(dim=[1, 2000, 1000, 1000])))
        def build():
            try:
                CheckedNet(n.to_proto())
            except MemoryError as error:
                assert isinstance(error, ValueError)
                raise
        report(build)''',
        r"raised NetTooLargeError: the net's blobs need 1490.1 GiB \(1490.1 GiB more than "
        r"now\), only \d+\.\d GiB of memory is available; largest: 'big0' 1 x 2000 x 1000 x "
        r"1000, .*"),
    "superpixels of a 1200x1600 photo": (
        # Section 1 of issue 11 makes such images work; then this case moves to a larger one.
        '''
        from ssn.inference import superpixels
        report(lambda: superpixels(np.full((1200, 1600, 3), 100, np.uint8), n_spixels=100))''',
        r"raised NetTooLargeError: a 1200x1600 image is too large for the SSN net: "
        r"Convolution layer 'Convolution7': its im2col buffer would be 1773 x 1200 x 1600 = "
        r"3,404,160,000 values, over Caffe's limit of 2,147,483,647 per blob \(INT_MAX\); "
        r"use a smaller input"),
}


@pytest.mark.parametrize("case", sorted(SIZE_CASES))
def test_blob_size_checks(case):
    code, expected = SIZE_CASES[case]
    assert re.fullmatch(expected, outcome(code)), outcome(code)


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


@pytest.mark.parametrize("how", sorted(WEIGHT_CASES))
def test_bad_weights_file(tmp_path, how):
    model = conv_model(tmp_path / "good.caffemodel")
    bad = tmp_path / "bad.caffemodel"
    bad.write_bytes(damage_model(model, how))
    code = CONV_NET + f"report(lambda: CheckedNet(n.to_proto(), weights={str(bad)!r}))"
    assert re.fullmatch(WEIGHT_CASES[how], outcome(code)), outcome(code)


def test_rewritten_weights_file_is_read_again(tmp_path):
    from ssn.inference import BUNDLED_WEIGHTS, superpixels
    image = np.random.default_rng(3).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    weights = tmp_path / "model.caffemodel"
    shutil.copy(BUNDLED_WEIGHTS, weights)
    first = superpixels(image, 12, 3, weights, features="deep", enforce_connectivity=False)
    model = caffe_pb2.NetParameter.FromString(weights.read_bytes())
    for layer in model.layer:
        if layer.name == "Convolution7":
            rng = np.random.default_rng(4)
            layer.blobs[0].data[:] = rng.normal(0, 1, len(layer.blobs[0].data)).tolist()
    changed = model.SerializeToString()
    weights.write_bytes(changed)  # rewritten in place: same path, same size
    (tmp_path / "copy.caffemodel").write_bytes(changed)
    again = superpixels(image, 12, 3, weights, features="deep", enforce_connectivity=False)
    fresh = superpixels(image, 12, 3, tmp_path / "copy.caffemodel", features="deep",
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
