"""Training snapshots: written whole, read back checked.

* :class:`Snapshots` writes a solver's ``<prefix>_iter_<N>`` pair through a
  private staging folder beside its final names, so a kill or a full disk never
  leaves a truncated file, with the model's metadata file beside it.
* :func:`read_solverstate`, :func:`snapshot_model` and :func:`restore` check a
  ``.solverstate`` and its ``.caffemodel`` in Python before Caffe (which aborts
  on a truncated, empty, foreign or missing file) restores them.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import caffe
from caffe.proto import caffe_pb2

from ssn.atomic import write_atomic
from ssn.model_metadata import ModelSettings, metadata_path, write_metadata
from ssn.nets.checked import (
    blob_proto_shape,
    check_blob_proto,
    check_weights_fit,
    parse_binary_proto,
)
from ssn.nets.errors import NetCheckError
from ssn.nets.layer_params import layers_for_phase
from ssn.training.signals import stop_signals_deferred

STAGING_PREFIX = ".ssn-snapshot-"  # + "<pid>.<random>": Caffe writes snapshots in there
# Solvers that keep two history blobs per parameter (Caffe's AdamPreSolve, AdaDeltaPreSolve).
TWO_HISTORIES = ("Adam", "AdaDelta")


class SnapshotError(ValueError):
    """A snapshot that cannot be resumed from, with the reason."""


def solver_type(param: caffe_pb2.SolverParameter) -> str:
    if param.HasField("solver_type") and not param.HasField("type"):
        legacy = caffe_pb2.SolverParameter.SolverType.Name(param.solver_type)
        return {"NESTEROV": "Nesterov", "ADAGRAD": "AdaGrad", "RMSPROP": "RMSProp",
                "ADADELTA": "AdaDelta", "ADAM": "Adam"}.get(legacy, "SGD")
    return param.type


def learnable_shapes(net, net_param: caffe_pb2.NetParameter) -> list[tuple[int, ...]]:
    """Shapes of the solver's learnable parameters, in Caffe's order (a parameter shared
    by name counts once, where it first appears)."""
    specs = {layer.name: layer.param for layer in layers_for_phase(net_param, caffe.TRAIN)}
    seen, shapes = set(), []
    for layer_name, blobs in net.params.items():
        for index, blob in enumerate(blobs):
            layer_specs = specs.get(layer_name, [])
            name = layer_specs[index].name if index < len(layer_specs) else ""
            if name and name in seen:
                continue
            seen.add(name)
            shapes.append(tuple(blob.data.shape))
    return shapes


class Snapshots:
    """Writes a solver's snapshots under ``<prefix>_iter_<N>`` without ever leaving a
    partial file there.

    Caffe writes the pair into a private folder beside the final names (same
    file system); the ``.caffemodel`` is renamed into place, then the
    ``.solverstate``, rewritten to name its model relative to itself, is
    written atomically. An older ``.solverstate`` of the same iteration is
    removed first, so a ``.solverstate`` never pairs with another run's model.
    With ``settings``, each ``.caffemodel`` gets its metadata file
    (:mod:`ssn.model_metadata`) beside it, written before the model is renamed
    into place.
    """

    def __init__(self, prefix: str, settings: Optional[ModelSettings] = None) -> None:
        self.prefix = prefix
        self.settings = settings
        self.folder = Path(prefix).parent
        remove_stale_staging(self.folder)
        self.staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}.",
                                             dir=self.folder))
        self.staging_prefix = str(self.staging / "snapshot")
        self.last: Optional[int] = None  # iteration of the last snapshot written or resumed

    def paths(self, iteration: int) -> tuple[Path, Path]:
        stem = f"{self.prefix}_iter_{iteration}"
        return Path(stem + ".caffemodel"), Path(stem + ".solverstate")

    def write(self, solver, histories: int) -> tuple[Path, Path]:
        """Snapshot the solver's current iteration; return the model and state paths.

        Raises
        ------
        OSError
            ENOSPC if the folder has not room for the pair (checked first: Caffe
            aborts when a write fails).
        """
        iteration = solver.iter
        model, state = self.paths(iteration)
        weights = sum(blob.data.nbytes for blobs in solver.net.params.values() for blob in blobs)
        needed = int(weights * (1 + histories) * 1.1) + 2**20
        free = shutil.disk_usage(self.folder).free
        if free < needed:
            raise OSError(errno.ENOSPC, f"no room for the snapshot of iteration {iteration} in "
                                        f"{self.folder}: it needs about {needed / 2**20:.1f} "
                                        f"MiB, {free / 2**20:.1f} MiB are free")
        staged = Path(f"{self.staging_prefix}_iter_{iteration}")
        staged_model = staged.with_name(staged.name + ".caffemodel")
        staged_state = staged.with_name(staged.name + ".solverstate")
        model_bytes = int(weights * 1.1) + 2**20
        try:
            reserve(staged_model, model_bytes)
            reserve(staged_state, needed - model_bytes)
        except OSError as error:
            staged_model.unlink(missing_ok=True)
            staged_state.unlink(missing_ok=True)
            raise OSError(error.errno, f"cannot write the snapshot of iteration {iteration} in "
                                       f"{self.folder}: {error.strerror or error}") from error
        with stop_signals_deferred():
            solver.snapshot()
            state_proto = caffe_pb2.SolverState.FromString(staged_state.read_bytes())
            state_proto.learned_net = model.name  # relative to the .solverstate's folder
            state.unlink(missing_ok=True)
            if self.settings is not None:
                write_metadata(metadata_path(model), self.settings)
            os.replace(staged_model, model)
            write_atomic(state, state_proto.SerializeToString())
            staged_state.unlink()
        self.last = iteration
        return model, state

    def close(self) -> None:
        shutil.rmtree(self.staging, ignore_errors=True)


def reserve(path: Path, size: int) -> None:
    """Create ``path`` holding ``size`` bytes, for Caffe to overwrite.

    Caffe aborts the process when a snapshot write fails (a CHECK in io.cpp).
    Files made here first give it their inodes and blocks, so that out of
    inodes, a quota or a full disk raise ``OSError`` here instead.
    """
    with open(path, "wb") as stream:
        try:
            os.posix_fallocate(stream.fileno(), 0, size)
        except OSError as error:
            if error.errno not in (errno.EOPNOTSUPP, errno.EINVAL):
                raise
            chunk = bytes(2**20)  # a file system without fallocate: write the bytes
            for start in range(0, size, len(chunk)):
                stream.write(chunk[:min(len(chunk), size - start)])


def remove_stale_staging(folder: Path) -> None:
    """Remove the staging folders of training processes that no longer run."""
    for staging in folder.glob(STAGING_PREFIX + "*"):
        pid = staging.name[len(STAGING_PREFIX):].split(".")[0]
        if pid.isdigit() and not process_exists(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_solverstate(path: Path) -> caffe_pb2.SolverState:
    """Parse and check a ``.solverstate`` (Caffe aborts on a bad one).

    Raises
    ------
    FileNotFoundError
        If it is missing.
    SnapshotError
        If it is empty, truncated, not a solver state, or HDF5.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"solver state not found: {path}")
    if path.suffix == ".h5":
        raise SnapshotError(f"{path}: HDF5 solver states are not supported; resume from a "
                            ".solverstate (snapshot_format: BINARYPROTO)")
    state = parse_binary_proto(path, caffe_pb2.SolverState(), "a solver state (.solverstate)",
                               SnapshotError)
    if not state.HasField("iter") or not state.learned_net:
        raise SnapshotError(f"{path} names no iteration or no model: not a solver state "
                            "(.solverstate) of a training run")
    for index, blob in enumerate(state.history):
        try:
            check_blob_proto(blob, f"{path}: history blob {index}")
        except NetCheckError as error:
            raise SnapshotError(str(error)) from error
    return state


def snapshot_model(state: caffe_pb2.SolverState, path: Path) -> Path:
    """The ``.caffemodel`` a solver state names: relative to the state's folder, as
    Caffe wrote it (absolute or relative to the working folder), or, for a moved run
    folder, the file of that name beside the state."""
    named = Path(state.learned_net)
    candidates = [path.parent / named] if not named.is_absolute() else []
    candidates += [named, path.parent / named.name]
    for candidate in candidates:
        if candidate.is_file():
            return candidate.resolve()
    raise SnapshotError(f"{path} names its model {state.learned_net}, which is not there "
                        f"(looked for {', '.join(dict.fromkeys(map(str, candidates)))}); keep "
                        "the .caffemodel beside its .solverstate")


def restore(solver, param: caffe_pb2.SolverParameter, net_param: caffe_pb2.NetParameter,
            path: Path) -> None:
    """``solver.restore(path)`` after checking everything Caffe would abort on."""
    path = Path(path)
    state = read_solverstate(path)
    model = snapshot_model(state, path)
    try:
        check_weights_fit(solver.net, model)
    except NetCheckError as error:
        raise SnapshotError(f"{path}: its model does not fit this net: {error}") from error
    shapes = learnable_shapes(solver.net, net_param)
    histories = 2 if solver_type(param) in TWO_HISTORIES else 1
    if len(state.history) != histories * len(shapes):
        raise SnapshotError(f"{path} holds {len(state.history)} history blobs; the "
                            f"{solver_type(param)} solver of this net keeps "
                            f"{histories * len(shapes)}: it is from another net or solver")
    for index, blob in enumerate(state.history):
        expected = shapes[index % len(shapes)]
        if blob_proto_shape(blob) != expected:
            raise SnapshotError(f"{path}: history blob {index} is {blob_proto_shape(blob)}, "
                                f"this net's parameter is {expected}: it is from another net")
    state.learned_net = str(model)
    with tempfile.TemporaryDirectory() as folder:
        resolved = Path(folder) / "resume.solverstate"
        resolved.write_bytes(state.SerializeToString())
        solver.restore(str(resolved))
