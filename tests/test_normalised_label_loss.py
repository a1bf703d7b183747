"""The label loss's renormalisation folded into LossWithoutSoftmax (``normalize``) against
the original's chain of layers (``SSNConfig(fused_decoder=False)``): the whole TRAIN net's
losses and gradients on the same inputs and weights, and a few Adam iterations."""
import tempfile
from pathlib import Path

import caffe
import numpy as np
import pytest
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from ssn.nets.checked import CheckedNet
from ssn.nets.generators import LABEL_IGNORE, SSNConfig, train_net
from ssn.nets.prototxt import PrototxtOptions, solver
from ssn.nets.weights import initialize_helper_weights, inputs_for_data_layers

# A small CNN net with SSN's 50 label channels.
GEOMETRY = dict(height=33, width=41, grid_request=12, num_steps=2, feature_dim=8, batch_size=2,
                num_label_channels=50)
CHAIN_LAYERS = {"recon_label2", "ReLU8", "Convolution10", "Power1", "Tile2", "recon_label3"}


def label_batch(rng: np.random.Generator, config: SSNConfig) -> dict[str, np.ndarray]:
    """Random Lab-like images, initial cells, and labels of a few regions (one-hot in
    ``problabel``), with some pixels ignored (255, all-zero one-hot)."""
    from ssn.reference.grid import init_cells

    num, height, width = config.batch_size, config.height, config.width
    cells = init_cells(height, width, *config.grid)[None, None].astype(float).repeat(num, 0)
    regions = (np.arange(height)[:, None] * 3 // height) * 4 + np.arange(width)[None] * 4 // width
    labels = np.stack([rng.permutation(config.num_label_channels)[regions] for _ in range(num)])
    labels = labels[:, None].astype(float)
    labels[rng.random(labels.shape) < 0.1] = LABEL_IGNORE
    onehot = labels == np.arange(config.num_label_channels)[None, :, None, None]
    return dict(img=rng.normal(size=(num, 3, height, width)) * 20, spixel_init=cells,
                feat_spixel_init=cells, label=labels, problabel=onehot.astype(float))


def net_param(fused: bool, inputs: dict) -> caffe_pb2.NetParameter:
    config = SSNConfig(**GEOMETRY, fused_decoder=fused)
    shapes = {name: value.shape for name, value in inputs.items()}
    return inputs_for_data_layers(train_net(config), caffe.TRAIN, shapes)


def copy_weights(source: caffe.Net, target: caffe.Net) -> None:
    """Every parameter blob of ``source`` into the layer of the same name in ``target``."""
    for name, blobs in source.params.items():
        for index, blob in enumerate(blobs):
            target.params[name][index].data[...] = blob.data


def test_the_fused_label_loss_is_one_normalising_layer():
    fused = train_net(SSNConfig())
    names = {layer.name for layer in fused.layer}
    assert not names & CHAIN_LAYERS
    loss = next(layer for layer in fused.layer if layer.name == "loss3")
    assert loss.type == "LossWithoutSoftmax" and loss.bottom[0] == "Convolution9"
    option = loss.loss_without_softmax_param
    assert option.normalize and option.shift == pytest.approx(1e-10)
    assert option.sum_shift == pytest.approx(1e-12)
    chain = train_net(SSNConfig(fused_decoder=False))
    assert CHAIN_LAYERS <= {layer.name for layer in chain.layer}
    chain_loss = next(layer for layer in chain.layer if layer.name == "loss3")
    assert chain_loss.bottom[0] == "recon_label3"
    assert not chain_loss.loss_without_softmax_param.normalize


def test_train_nets_with_the_option_and_the_chain_agree():
    """Same inputs and weights: the same losses, and the same gradients at the
    reconstruction (SpixelToPixel's output), at SpixelToPixel's inputs and at the CNN."""
    rng = np.random.default_rng(31)
    inputs = None
    nets = {}
    for fused in (True, False):
        if inputs is None:
            inputs = label_batch(rng, SSNConfig(**GEOMETRY))
        net = CheckedNet(net_param(fused, inputs), caffe.TRAIN)
        initialize_helper_weights(net.net)
        if not fused:
            copy_weights(nets[True].net, net.net)
        net.forward(**inputs)
        net.net.backward()
        nets[fused] = net
    fused, chain = nets[True].net, nets[False].net
    for name in ("loss1", "loss2", "loss3"):
        assert float(fused.blobs[name].data) == pytest.approx(float(chain.blobs[name].data),
                                                              rel=1e-5), name
    assert float(fused.blobs["loss3"].data) > 0
    for name in ("Convolution9", "spixel_label", "final_pixel_assoc", "trans_features"):
        expected = chain.blobs[name].diff
        scale = float(np.abs(expected).max())
        assert scale > 0, name
        np.testing.assert_allclose(fused.blobs[name].diff, expected, rtol=1e-4,
                                   atol=1e-5 * scale, err_msg=name)
    for name in ("Convolution1", "Convolution7"):
        expected = chain.params[name][0].diff
        np.testing.assert_allclose(fused.params[name][0].diff, expected, rtol=1e-3,
                                   atol=1e-4 * float(np.abs(expected).max()), err_msg=name)


def adam_solver(param: caffe_pb2.NetParameter, base_lr: float):
    """A pycaffe Adam solver (the generated solver's settings) on an inline net."""
    settings = solver(PrototxtOptions(base_lr=base_lr, max_iter=100), "")
    settings.ClearField("net")
    settings.net_param.CopyFrom(param)
    del settings.test_iter[:]
    settings.ClearField("test_interval")
    settings.snapshot = 0
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as handle:
        handle.write(text_format.MessageToString(settings))
    try:
        return caffe.get_solver(handle.name)
    finally:
        Path(handle.name).unlink()


# Agreement after ITERATIONS Adam steps at the generated solver's learning rate (1e-4),
# measured (docs/LAYERS.md): losses within 1e-7 relative, weights within 1.2e-3 of one
# step (lr); the tolerances leave a margin of about 10.
ITERATIONS, LEARNING_RATE = 3, PrototxtOptions().base_lr
LOSS_RTOL, WEIGHT_ATOL = 1e-6, 0.01 * LEARNING_RATE


def test_adam_iterations_with_the_option_and_the_chain_agree():
    rng = np.random.default_rng(32)
    batches = [label_batch(rng, SSNConfig(**GEOMETRY)) for _ in range(ITERATIONS)]
    solvers = {fused: adam_solver(net_param(fused, batches[0]), LEARNING_RATE)
               for fused in (True, False)}
    initialize_helper_weights(solvers[False].net)
    copy_weights(solvers[True].net, solvers[False].net)
    initial = {name: blobs[0].data.copy() for name, blobs in solvers[True].net.params.items()}
    losses = {True: [], False: []}
    for batch in batches:
        for fused, run in solvers.items():
            for name, value in batch.items():
                run.net.blobs[name].data[...] = value
            run.step(1)
            losses[fused].append(float(run.net.blobs["loss3"].data))
    np.testing.assert_allclose(losses[True], losses[False], rtol=LOSS_RTOL)
    moved = 0.0
    for name, start in initial.items():
        fused = solvers[True].net.params[name][0].data
        chain = solvers[False].net.params[name][0].data
        np.testing.assert_allclose(fused, chain, rtol=0, atol=WEIGHT_ATOL, err_msg=name)
        moved = max(moved, float(np.abs(fused - start).max()))
    assert moved > ITERATIONS * LEARNING_RATE / 2  # the weights did move


def separate_softmax_tops(param: caffe_pb2.NetParameter) -> caffe_pb2.NetParameter:
    """``param`` with each in-place SLIC-step Softmax writing a blob of its own."""
    separate = caffe_pb2.NetParameter()
    separate.CopyFrom(param)
    renamed = {}
    for layer in separate.layer:
        for index, bottom in enumerate(layer.bottom):
            layer.bottom[index] = renamed.get(bottom, bottom)
        if layer.type == "Softmax" and layer.top[0] == layer.bottom[0]:
            renamed[layer.top[0]] = layer.name
            layer.top[0] = layer.name
    assert renamed, "the train net has no in-place Softmax"
    return separate


def test_in_place_slic_softmax_changes_no_bit():
    """The SLIC steps' Softmax layers run in place on Passoc's top (a blob and a diff
    fewer per step); losses and gradients are the bits of separate tops."""
    inputs = label_batch(np.random.default_rng(5), SSNConfig(**GEOMETRY))
    in_place = CheckedNet(net_param(True, inputs), caffe.TRAIN)
    separate = CheckedNet(separate_softmax_tops(net_param(True, inputs)), caffe.TRAIN)
    for net in (in_place, separate):
        initialize_helper_weights(net.net)
    copy_weights(in_place.net, separate.net)
    for net in (in_place, separate):
        net.forward(**inputs)
        net.net.backward()
    assert "Softmax1" in separate.net.blobs and "Softmax1" not in in_place.net.blobs
    for name in ("loss1", "loss2", "loss3"):
        assert float(in_place.net.blobs[name].data) == float(separate.net.blobs[name].data)
    np.testing.assert_array_equal(in_place.net.blobs["trans_features"].diff,
                                  separate.net.blobs["trans_features"].diff)
    assert np.abs(in_place.net.blobs["trans_features"].diff).max() > 0
