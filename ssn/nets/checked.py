"""Build Caffe nets with the SSN layers, checked in Python before Caffe sees them.

:class:`CheckedNet` wraps a ``caffe.Net``: its parameters and shapes are checked
when it is built, and every forward checks the input arrays (shapes and index
values) and reshapes the net when an input's shape changes, so one built net
serves any image size and batch.
"""
from __future__ import annotations

import math
import os
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

import caffe
import numpy as np
from caffe.proto import caffe_pb2
from google.protobuf import text_format

from ssn.nets.errors import NetCheckError
from ssn.nets.folding import fold_into_convolutions, without_batch_norm, without_relu
from ssn.nets.index_checks import check_index_inputs, check_index_values, runtime_index_checks
from ssn.nets.layer_params import blob_values
from ssn.nets.memory_budget import check_blob_sizes
from ssn.nets.net_rules import check_grid_fits, warn_positive_scale
from ssn.nets.shape_inference import infer_shapes

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


LEGACY_BLOB_FIELDS = ("num", "channels", "height", "width")


def blob_proto_shape(blob: caffe_pb2.BlobProto) -> tuple[int, ...]:
    """The shape Caffe gives a stored blob: the legacy 4-D fields if any is set."""
    if any(blob.HasField(field) for field in LEGACY_BLOB_FIELDS):
        return tuple(int(getattr(blob, field)) for field in LEGACY_BLOB_FIELDS)
    return tuple(int(d) for d in blob.shape.dim)


def check_blob_proto(blob: caffe_pb2.BlobProto, where: str) -> None:
    """Raise NetCheckError unless ``blob`` holds one finite value per element of its
    shape (Caffe aborts on a count mismatch and trains NaN on)."""
    shape = blob_proto_shape(blob)
    expected = math.prod(shape)
    values = blob_values(blob)
    if len(values) != expected:
        raise NetCheckError(f"{where} has shape {' x '.join(map(str, shape)) or '()'} "
                            f"({expected} values) but holds {len(values)}: the file is "
                            "truncated or corrupt")
    bad = ~np.isfinite(values)
    if bad.any():
        raise NetCheckError(f"{where} holds {int(bad.sum())} NaN or infinite value(s): the "
                            "model diverged or the file is corrupt")


def parse_binary_proto(path: Path, message, what: str, error: type):
    """Parse the binary protobuf file ``path`` into ``message``; return it.

    Raises ``error`` saying that the file is not ``what`` when it is empty or
    does not parse (Caffe would abort on either).
    """
    data = Path(path).read_bytes()
    if not data:
        raise error(f"{path} is empty (0 bytes): not {what}")
    try:
        message.ParseFromString(data)
    except Exception as cause:  # protobuf raises its own DecodeError
        raise error(f"{path} is not {what}, or is truncated: {cause}") from cause
    return message


def read_caffemodel(path: Union[str, Path]) -> caffe_pb2.NetParameter:
    """Parse a .caffemodel and check every stored blob, before Caffe reads it.

    Parsed once per version of the file (:func:`_parsed_caffemodel`, keyed on the
    resolved path, inode, size and modification and change times: a file rewritten
    in place is read again); the message is shared, so callers must not change it.

    Raises
    ------
    FileNotFoundError
        If there is no such file.
    NetCheckError
        If the file is empty, not a Caffe model, truncated, holds no layers, or
        a blob lacks values or holds NaN or infinity; the message names the
        file and the layer.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    stat = path.stat()
    return _parsed_caffemodel(str(path), str(path.resolve()), stat.st_ino, stat.st_size,
                              stat.st_mtime_ns, stat.st_ctime_ns)


# A few models at a time (the bundled one is 2 MB parsed): those of one superpixels() call.
@lru_cache(maxsize=4)
def _parsed_caffemodel(path: str, *identity) -> caffe_pb2.NetParameter:
    """:func:`read_caffemodel`'s parse and checks of ``path``; ``identity`` (its resolved
    path and stat fields) only keys the cache."""
    model = parse_binary_proto(Path(path), caffe_pb2.NetParameter(),
                               "a Caffe model (.caffemodel)", NetCheckError)
    if not model.layer:
        raise NetCheckError(f"{path} holds no layers: not a Caffe model (.caffemodel)")
    for layer in model.layer:
        for index, blob in enumerate(layer.blobs):
            check_blob_proto(blob, f"{path}: layer {layer.name} blob {index}")
    return model


def caffemodel_shapes(path: Union[str, Path]) -> dict[str, list[tuple[int, ...]]]:
    """Layer name -> shapes of its parameter blobs in a .caffemodel (checked)."""
    return {layer.name: [tuple(blob.shape.dim) for blob in layer.blobs]
            for layer in read_caffemodel(path).layer if layer.blobs}


def check_weights_fit(net: caffe.Net, path: Union[str, Path], complete: bool = True) -> None:
    """Raise NetCheckError unless ``net.copy_from(path)`` is safe and, with
    ``complete``, sets every learnable layer of ``net``.

    Caffe skips a layer the file lacks silently, and aborts on a layer whose
    blobs differ in number or shape from the net's. Without ``complete`` (to
    fine-tune) layers may be missing, but one at least must match.
    """
    stored = caffemodel_shapes(path)
    missing = [name for name in net.params if name not in stored]
    if missing and (complete or len(missing) == len(net.params)):
        raise NetCheckError(f"{path} has no weights for layers {', '.join(missing)}: it is "
                            "not a model of this network")
    for name, blobs in stored.items():
        if name not in net.params and name in list(net._layer_names):
            raise NetCheckError(f"{path}: layer {name} has {len(blobs)} weight blob(s), the "
                                "network's layer of that name has none")
    for name, blobs in net.params.items():
        if name not in stored:
            continue
        shapes = [tuple(blob.data.shape) for blob in blobs]
        legacy = any(len(shape) == 0 for shape in stored[name])  # num/channels/... fields
        if len(shapes) != len(stored[name]) or (not legacy and shapes != stored[name]):
            raise NetCheckError(f"{path}: layer {name} has weights of shapes {stored[name]}, "
                                f"the network wants {shapes}")


class CheckedNet:
    """A ``caffe.Net`` checked in Python first, so that Caffe's fatal CHECKs cannot fire.

    Any net is checked before Caffe builds it: every layer's type, the SSN and
    stock layers' parameters and shapes (:func:`ssn.nets.shape_inference.infer_shapes`),
    the data layers' sources, and the grid the SSN layers read each cell map
    with. A Passoc with a positive scale_value gives a
    :class:`ssn.nets.net_rules.PositiveScaleWarning`.

    Parameters
    ----------
    source : str, Path or caffe_pb2.NetParameter
        Prototxt path or text, or a parsed net.
    phase : int
        caffe.TRAIN or caffe.TEST.
    weights : str or Path, optional
        A .caffemodel whose weights are copied in by layer name.
    fold_batch_norm : bool
        In a TEST net with weights, fold each BatchNorm into the Convolution
        before it (:mod:`ssn.nets.folding`): the same outputs up to float
        rounding, faster; the folded BatchNorm's input blob is gone.
    fold_relu : bool
        In a TEST net, fold each in-place ReLU into the Convolution before it
        (:mod:`ssn.nets.folding`): the same outputs, faster; the net has no
        backward through those Convolutions.

    Raises
    ------
    NetCheckError
        If Caffe would abort on the net's layer types, parameters, shapes, data
        sources or weights file; later, in :meth:`set_inputs`, for an input size
        that the net's grid was not made for.
    NetTooLargeError
        A NetCheckError and a MemoryError: a blob over Caffe's INT_MAX count, or
        blobs that need more memory than is available.
    FileNotFoundError
        If ``weights`` does not exist.

    Attributes
    ----------
    net : caffe.Net
    blob_bytes : int
        The memory its blobs of known shape hold once used (a lower bound).

    Notes
    -----
    Index maps that come from Input blobs are checked when they are set; those
    that another non-SSN layer makes (DummyData, a Python layer) are checked
    during :meth:`forward`, just before the SSN layer that reads them runs.
    """

    def __init__(self, source: NetSource, phase: int = caffe.TEST,
                 weights: Optional[Union[str, Path]] = None,
                 fold_batch_norm: bool = False, fold_relu: bool = False) -> None:
        self.net_param = parse_net(source)
        self.phase = phase
        model = None if weights is None else read_caffemodel(weights)  # fails early
        folds = []
        if fold_batch_norm and model is not None and phase == caffe.TEST:
            self.net_param, folds = without_batch_norm(self.net_param, model)
        if fold_relu and phase == caffe.TEST:
            self.net_param, _ = without_relu(self.net_param)
        self.shapes = infer_shapes(self.net_param, phase)
        self.setup_shapes = dict(self.shapes)  # what layers fix their weights' shapes to
        warn_positive_scale(self.net_param, phase)
        self.inputs = input_blob_names(self.net_param)
        self.blob_bytes = check_blob_sizes(self.net_param, self.shapes, phase)
        self.index_checks = runtime_index_checks(self.net_param, self.shapes, phase)
        self._held: dict[str, np.ndarray] = {}
        with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as handle:
            handle.write(text_format.MessageToString(self.net_param))
        try:
            self.net = caffe.Net(handle.name, phase)
        finally:
            os.unlink(handle.name)
        if weights is not None:
            check_weights_fit(self.net, weights)
            self.net.copy_from(str(weights))
            fold_into_convolutions(self.net, folds, model)

    def set_inputs(self, inputs: Mapping[str, np.ndarray]) -> None:
        """Check ``inputs`` and copy them into the input blobs, reshaping as needed.

        A read-only float32 array that was set last time and that its blob still
        holds unchanged is neither checked nor copied again (the initial cells of a
        cached net, for one).
        """
        unknown = sorted(set(inputs) - set(self.inputs))
        if unknown:
            raise NetCheckError(f"not inputs of this net: {', '.join(unknown)} "
                                f"(inputs are {', '.join(self.inputs)})")
        arrays = {name: np.asarray(value, dtype=np.float32) for name, value in inputs.items()
                  if not self._still_holds(name, value)}
        current = {name: tuple(self.net.blobs[name].data.shape) for name in self.inputs}
        current.update({name: array.shape for name, array in arrays.items()})
        if current != {name: self.shapes[name] for name in self.inputs}:
            shapes = infer_shapes(self.net_param, self.phase, current, self.setup_shapes)
            check_grid_fits(self.net_param, self.setup_shapes, shapes, self.phase)
            self.blob_bytes = check_blob_sizes(self.net_param, shapes, self.phase,
                                               held=self.shapes)
            self.shapes = shapes
            self.index_checks = runtime_index_checks(self.net_param, shapes, self.phase)
        check_index_inputs(self.net_param, arrays, self.phase, self.shapes)
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
            if array.flags.writeable:
                self._held.pop(name, None)
            else:
                self._held[name] = array

    def _still_holds(self, name: str, value) -> bool:
        """Whether input blob ``name`` holds the read-only ``value`` set last time."""
        held = self._held.get(name)
        if held is None or value is not held:
            return False
        data = self.net.blobs[name].data
        return data.shape == held.shape and np.array_equal(data, held)

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
        self._forward_checked()
        names = list(outputs) if outputs is not None else list(self.net.outputs)
        return {name: self.net.blobs[name].data.copy() for name in names}

    def _forward_checked(self) -> None:
        """Forward through the whole net, checking the index maps that layers inside it
        make just before the SSN layer that reads them runs."""
        if not self.index_checks:
            self.net.forward()
            return
        names = list(self.net._layer_names)
        start = 0
        for layer_name, checks in self.index_checks:
            index = names.index(layer_name)
            if index > start:
                self.net._forward(start, index - 1)
            for blob, limit, ignore, where in checks:
                check_index_values(self.net.blobs[blob].data, limit, ignore, where)
            start = index
        self.net._forward(start, len(names) - 1)

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
