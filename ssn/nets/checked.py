"""Build Caffe nets with the SSN layers, checked in Python before Caffe sees them.

:class:`CheckedNet` wraps a ``caffe.Net``: its parameters and shapes are checked
when it is built, and every forward checks the input arrays (shapes and index
values) and reshapes the net when an input's shape changes, so one built net
serves any image size and batch.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import caffe
import numpy as np
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from ssn.nets.checks import NetCheckError, check_index_inputs, infer_shapes

NetSource = Union[str, Path, caffe_pb2.NetParameter]


def parse_net(source: NetSource) -> caffe_pb2.NetParameter:
    """A NetParameter from a prototxt path, prototxt text, or a NetParameter."""
    if isinstance(source, caffe_pb2.NetParameter):
        return source
    text = str(source)
    if isinstance(source, Path) or (os.path.exists(text) and "\n" not in text):
        text = Path(source).read_text()
    net_param = caffe_pb2.NetParameter()
    try:
        text_format.Merge(text, net_param)
    except text_format.ParseError as error:
        raise NetCheckError(f"cannot parse the net: {error}") from error
    return net_param


def input_blob_names(net_param: caffe_pb2.NetParameter) -> list[str]:
    """Names of the blobs produced by Input layers and legacy net inputs."""
    names = list(net_param.input)
    for layer in net_param.layer:
        if layer.type == "Input":
            names.extend(layer.top)
    return names


def caffemodel_shapes(path: Union[str, Path]) -> dict[str, list[tuple[int, ...]]]:
    """Layer name -> shapes of its parameter blobs in a .caffemodel."""
    model = caffe_pb2.NetParameter()
    try:
        model.ParseFromString(Path(path).read_bytes())
    except Exception as error:  # protobuf raises its own DecodeError
        raise NetCheckError(f"{path} is not a Caffe model (.caffemodel): {error}") from error
    return {layer.name: [tuple(blob.shape.dim) for blob in layer.blobs]
            for layer in model.layer if layer.blobs}


def check_weights_fit(net: caffe.Net, path: Union[str, Path]) -> None:
    """Raise NetCheckError unless ``path`` holds every learnable layer of ``net`` with the
    same blob shapes (Caffe would skip a missing layer silently and abort on a shape).
    """
    stored = caffemodel_shapes(path)
    missing = [name for name in net.params if name not in stored]
    if missing:
        raise NetCheckError(f"{path} has no weights for layers {', '.join(missing)}: it is "
                            "not a model of this network")
    for name, blobs in net.params.items():
        shapes = [tuple(blob.data.shape) for blob in blobs]
        legacy = any(len(shape) == 0 for shape in stored[name])  # num/channels/... fields
        if len(shapes) != len(stored[name]) or (not legacy and shapes != stored[name]):
            raise NetCheckError(f"{path}: layer {name} has weights of shapes {stored[name]}, "
                                f"the network wants {shapes}")


class CheckedNet:
    """A ``caffe.Net`` whose SSN layers are checked in Python first.

    Parameters
    ----------
    source : str, Path or caffe_pb2.NetParameter
        Prototxt path or text, or a parsed net.
    phase : int
        caffe.TRAIN or caffe.TEST.
    weights : str or Path, optional
        A .caffemodel whose weights are copied in by layer name.

    Raises
    ------
    NetCheckError
        If Caffe would abort on the net's parameters or shapes.
    """

    def __init__(self, source: NetSource, phase: int = caffe.TEST,
                 weights: Optional[Union[str, Path]] = None) -> None:
        self.net_param = parse_net(source)
        self.phase = phase
        self.shapes = infer_shapes(self.net_param, phase)
        self.inputs = input_blob_names(self.net_param)
        if weights is not None and not Path(weights).is_file():
            raise FileNotFoundError(f"weights file not found: {weights}")
        with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as handle:
            handle.write(text_format.MessageToString(self.net_param))
        try:
            self.net = caffe.Net(handle.name, phase)
        finally:
            os.unlink(handle.name)
        if weights is not None:
            check_weights_fit(self.net, weights)
            self.net.copy_from(str(weights))

    def set_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Check ``inputs`` and copy them into the input blobs, reshaping as needed."""
        unknown = sorted(set(inputs) - set(self.inputs))
        if unknown:
            raise NetCheckError(f"not inputs of this net: {', '.join(unknown)} "
                                f"(inputs are {', '.join(self.inputs)})")
        arrays = {name: np.asarray(value, dtype=np.float32) for name, value in inputs.items()}
        current = {name: tuple(self.net.blobs[name].data.shape) for name in self.inputs}
        current.update({name: array.shape for name, array in arrays.items()})
        if current != {name: self.shapes[name] for name in self.inputs}:
            self.shapes = infer_shapes(self.net_param, self.phase, current)
        check_index_inputs(self.net_param, arrays, self.phase)
        reshaped = False
        for name, array in arrays.items():
            blob = self.net.blobs[name]
            if blob.data.shape != array.shape:
                blob.reshape(*array.shape)
                reshaped = True
        if reshaped:
            self.net.reshape()
        for name, array in arrays.items():
            self.net.blobs[name].data[...] = array

    def forward(self, outputs: Optional[Sequence[str]] = None,
                **inputs: np.ndarray) -> dict[str, np.ndarray]:
        """Run forward on checked inputs; return copies of the ``outputs`` blobs.

        Parameters
        ----------
        outputs : sequence of str, optional
            Blobs to return (default: the net's outputs).
        **inputs : ndarray
            Input blob values by name; inputs not given keep their contents.
        """
        self.set_inputs(inputs)
        self.net.forward()
        names = list(outputs) if outputs is not None else list(self.net.outputs)
        return {name: self.net.blobs[name].data.copy() for name in names}

    def backward(self, top_diffs: Mapping[str, np.ndarray],
                 diffs: Sequence[str]) -> dict[str, np.ndarray]:
        """Backpropagate ``top_diffs`` (by blob name); return copies of ``diffs``' diffs.

        Call after :meth:`forward`. Needs ``force_backward`` in the net for
        blobs that no loss depends on.
        """
        for name, diff in top_diffs.items():
            blob = self.net.blobs[name]
            if blob.diff.shape != np.shape(diff):
                raise NetCheckError(f"diff for '{name}' has shape {np.shape(diff)}, "
                                    f"blob has {blob.diff.shape}")
            blob.diff[...] = diff
        self.net.backward()
        return {name: self.net.blobs[name].diff.copy() for name in diffs}


def single_layer_net(layer_type: str, bottom_shapes: Sequence[Sequence[int]], ntop: int = 1,
                     **params) -> CheckedNet:
    """A checked net of Input blobs ``bottom0..`` feeding one layer with tops ``top0..``.

    ``params`` are NetSpec layer parameters, e.g.
    ``spixel_feature2_param=dict(num_spixels_h=2, num_spixels_w=3)``.
    Backward is forced, so every differentiable bottom receives a diff.
    """
    spec = caffe.NetSpec()
    bottoms = []
    for index, shape in enumerate(bottom_shapes):
        bottom = caffe.layers.Input(shape=dict(dim=[int(d) for d in shape]))
        setattr(spec, f"bottom{index}", bottom)
        bottoms.append(bottom)
    tops = getattr(caffe.layers, layer_type)(*bottoms, ntop=ntop, **params)
    for index, top in enumerate([tops] if ntop == 1 else tops):
        setattr(spec, f"top{index}", top)
    net_param = spec.to_proto()
    net_param.force_backward = True
    return CheckedNet(net_param)
