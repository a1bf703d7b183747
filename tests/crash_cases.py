"""Cases of test_bad_inputs.py that reach Caffe, which ends the process on a failed CHECK.

Each case is a function returning its outcome line ("ok" or "raised Type: message");
test_bad_inputs.py runs one per fresh interpreter (``python tests/crash_cases.py NAME
[ARG ...]``, which prints the line), so a regression shows as a dead child, not a dead
test run. Caffe is imported inside the functions: importing this module is cheap.
"""
from __future__ import annotations

import os
import signal
import sys
from typing import Callable

import numpy as np


def caffe_cpu():
    """pycaffe on the CPU, and its layer factory."""
    import caffe
    from caffe import layers
    caffe.set_mode_cpu()
    return caffe, layers


def report(action: Callable[[], object]) -> str:
    """"ok", or "raised Type: message" for the exception ``action`` raised."""
    try:
        action()
    except Exception as error:  # noqa: BLE001 - the outcome is the test's to judge
        return f"raised {type(error).__name__}: {error}"
    return "ok"


def checked(proto, **kwargs) -> Callable[[], object]:
    """Build ``proto`` as a CheckedNet, later."""
    from ssn.nets.checked import CheckedNet
    return lambda: CheckedNet(proto, **kwargs)


def dummy_passoc(feat=(1, 3, 5, 7), spix=(1, 3, 1, 6), cells=(1, 1, 5, 7), filler=None,
                 grid=(2, 3)):
    """A Passoc layer fed by DummyData: pixel features, superpixel features, cells."""
    caffe, L = caffe_cpu()
    n = caffe.NetSpec()
    n.feat = L.DummyData(shape=dict(dim=list(feat)))
    n.spix = L.DummyData(shape=dict(dim=list(spix)))
    n.cells = L.DummyData(shape=dict(dim=list(cells)),
                          data_filler=filler or dict(type="constant", value=0))
    n.dist = L.Passoc(n.feat, n.spix, n.cells, spixel_feature2_param=dict(
        num_spixels_h=grid[0], num_spixels_w=grid[1]))
    return n.to_proto()


def input_passoc():
    """A Passoc layer on Input tops: feat 1x3x5x7, spix 1x3x1x6, cells 1x1x5x7."""
    caffe, L = caffe_cpu()
    n = caffe.NetSpec()
    n.feat = L.Input(shape=dict(dim=[1, 3, 5, 7]))
    n.spix = L.Input(shape=dict(dim=[1, 3, 1, 6]))
    n.cells = L.Input(shape=dict(dim=[1, 1, 5, 7]))
    n.dist = L.Passoc(n.feat, n.spix, n.cells, spixel_feature2_param=dict(
        num_spixels_h=2, num_spixels_w=3))
    return n.to_proto()


def zeros(*shape):
    return np.zeros(shape, np.float32)


def forward(proto, **inputs) -> Callable[[], object]:
    """Build ``proto`` as a CheckedNet and run it forward on ``inputs``, later."""
    from ssn.nets.checked import CheckedNet
    return lambda: CheckedNet(proto).forward(**inputs)


# CheckedNet: inputs from DummyData are checked as those from Input

def dummy_channel_mismatch():
    return report(checked(dummy_passoc(spix=(1, 4, 1, 6))))


def dummy_size_mismatch():
    return report(checked(dummy_passoc(cells=(1, 1, 6, 7))))


def dummy_k_mismatch():
    return report(checked(dummy_passoc(spix=(1, 3, 1, 5))))


def dummy_id_out_of_range():
    return report(forward(dummy_passoc(filler=dict(type="constant", value=6))))


def dummy_fractional_id():
    return report(forward(dummy_passoc(filler=dict(type="constant", value=2.5))))


def dummy_random_ids():
    return report(forward(dummy_passoc(filler=dict(type="uniform", min=0, max=5))))


def dummy_valid_ids_run():
    return report(forward(dummy_passoc(filler=dict(type="constant", value=5))))


def dummy_legacy_dims_missing():
    caffe, L = caffe_cpu()
    n = caffe.NetSpec()
    n.cells = L.DummyData(num=1, channels=1, height=5)
    return report(checked(n.to_proto()))


def dummy_without_shape():
    caffe, L = caffe_cpu()
    n = caffe.NetSpec()
    n.cells = L.DummyData()
    return report(checked(n.to_proto()))


def input_negative_size():
    caffe, L = caffe_cpu()
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, -3, 5, 5]))
    return report(checked(n.to_proto()))


def input_fractional_id():
    cells = zeros(1, 1, 5, 7)
    cells[0, 0, 2, 3] = 2.5
    return report(forward(input_passoc(), feat=zeros(1, 3, 5, 7), spix=zeros(1, 3, 1, 6),
                          cells=cells))


def ids_through_a_reshape():
    caffe, L = caffe_cpu()
    n = caffe.NetSpec()
    n.feat = L.Input(shape=dict(dim=[1, 3, 5, 7]))
    n.spix = L.Input(shape=dict(dim=[1, 3, 1, 6]))
    n.flat = L.Input(shape=dict(dim=[1, 35]))
    n.cells = L.Reshape(n.flat, reshape_param=dict(shape=dict(dim=[1, 1, 5, 7])))
    n.dist = L.Passoc(n.feat, n.spix, n.cells, spixel_feature2_param=dict(
        num_spixels_h=2, num_spixels_w=3))
    return report(forward(n.to_proto(), flat=np.full((1, 35), 7.0)))


# Blob sizes: Caffe's INT_MAX count, and memory

def input_over_int_max():
    caffe, L = caffe_cpu()
    n = caffe.NetSpec()
    n.big = L.Input(shape=dict(dim=[1, 1, 50000, 50000]))
    return report(checked(n.to_proto()))


def im2col_buffer_over_int_max():
    caffe, L = caffe_cpu()
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 200, 1200, 1600]))
    n.conv = L.Convolution(n.data, num_output=1, kernel_size=3, pad=1)
    return report(checked(n.to_proto()))


def reshape_to_over_int_max():
    caffe, L = caffe_cpu()
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, 1, 10, 10]))
    n.conv = L.Convolution(n.data, num_output=100000, kernel_size=1)
    return report(forward(n.to_proto(), data=np.zeros((1, 1, 150, 150))))


def more_than_the_memory():
    caffe, L = caffe_cpu()
    n = caffe.NetSpec()
    for i in range(200):
        setattr(n, f"big{i}", L.Input(shape=dict(dim=[1, 2000, 1000, 1000])))

    def build():
        try:
            checked(n.to_proto())()
        except MemoryError as error:
            assert isinstance(error, ValueError)  # a bad input too
            raise
    return report(build)


def slic_net_features_over_int_max():
    """108 MP of deep features: 20 x 9000 x 12000 values do not fit one blob."""
    from ssn.nets.generators import SSNConfig, slic_net
    caffe_cpu()
    config = SSNConfig(height=9000, width=12000, n_spixels=100, num_steps=10, feature_dim=20)
    return report(checked(slic_net(config)))


def photo_with_too_little_memory(features: str, memory: str):
    """superpixels() of a 1200x1600 photo when only ``memory`` bytes are available."""
    import ssn.nets.memory_budget as memory_budget
    from ssn.inference import superpixels
    caffe_cpu()
    memory_budget.available_memory = lambda: int(memory)
    image = np.full((1200, 1600, 3), 100, np.uint8)
    return report(lambda: superpixels(image, n_spixels=100, features=features))


# Weights files

def conv_net(channels: int = 2, relu: bool = True):
    """data (1 x channels x 5 x 5) -> 3x3 convolution, 3 outputs (-> ReLU 'out')."""
    caffe, L = caffe_cpu()
    n = caffe.NetSpec()
    n.data = L.Input(shape=dict(dim=[1, channels, 5, 5]))
    n.conv = L.Convolution(n.data, num_output=3, kernel_size=3,
                           weight_filler=dict(type="gaussian", std=0.1))
    if relu:
        n.out = L.ReLU(n.conv)
    return n.to_proto()


def save_conv_model(path: str, channels: str = "2"):
    """Save the weights of conv_net(channels) to ``path``."""
    from ssn.nets.checked import CheckedNet
    CheckedNet(conv_net(int(channels), relu=False)).net.save(path)
    return "ok"


def conv_net_with_weights(path: str):
    return report(checked(conv_net(), weights=path))


# Training

def kill_inside_the_iteration_6_snapshot(solver: str):
    """ssn-train on ``solver``, killed (SIGKILL) while renaming the iteration-6 model into
    place."""
    from ssn.cli.train import main
    from ssn.training import snapshots
    real = snapshots.os.replace

    def replace(source, target):
        if str(target).endswith("_iter_6.caffemodel"):
            os.kill(os.getpid(), signal.SIGKILL)
        real(source, target)
    snapshots.os.replace = replace
    return f"exit {main(['--solver', solver])}"


if __name__ == "__main__":
    name, *arguments = sys.argv[1:]
    print(globals()[name](*arguments))
