"""Train an SSN from a solver prototxt with pycaffe, never losing finished work.

* Snapshots every ``snapshot`` iterations, at the end (``snapshot_after_train``),
  on Ctrl-C or SIGTERM, and when any exception stops training (of the last
  completed iteration; not after a non-finite loss, whose weights are lost).
* A snapshot is written by Caffe into a private folder beside its final name and
  then renamed into place, so a kill or a full disk never leaves a truncated
  ``.solverstate``. Its ``learned_net`` names the ``.caffemodel`` relative to
  the ``.solverstate``, so a moved run folder resumes.
* ``resume`` checks the ``.solverstate`` and its ``.caffemodel`` in Python
  first (Caffe aborts on a truncated, empty, foreign or missing file) and
  continues the data sequence: batch ``iteration * iter_size`` is the next one
  (test nets: ``test_iter`` batches per test run so far).
* Each iteration's losses go to a CSV log; a resumed run drops the log rows
  after its snapshot, which it computes again.
* Each ``.caffemodel`` has a metadata file beside it (``<prefix>_iter_<N>.json``,
  :mod:`ssn.model_metadata`) with the position weight and colour scale it was
  trained at, so that ``superpixels(weights=...)`` runs it as trained; its
  count calibration is left to ``ssn-bench-calibration``.
"""
from __future__ import annotations

import contextlib
import csv
import errno
import io
import logging
import math
import os
import shutil
import signal
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Iterator, Optional

import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format
from tqdm import tqdm

from ssn.atomic import ensure_writable_folder, write_atomic
from ssn.device import use_device
from ssn.model_metadata import ModelSettings, metadata_path, train_net_settings, write_metadata
from ssn.nets.checked import (
    blob_proto_shape,
    check_blob_proto,
    check_weights_fit,
    parse_binary_proto,
)
from ssn.nets.checks import NetCheckError, infer_shapes, layers_for_phase
from ssn.nets.weights import initialize_helper_weights
from ssn.training.data_layer import BSDSDataLayer

log = logging.getLogger("ssn.training.solver")

STAGING_PREFIX = ".ssn-snapshot-"  # + "<pid>.<random>": Caffe writes snapshots in there
# Solvers that keep two history blobs per parameter (Caffe's AdamPreSolve, AdaDeltaPreSolve).
TWO_HISTORIES = ("Adam", "AdaDelta")


class SnapshotError(ValueError):
    """A snapshot that cannot be resumed from, with the reason."""


def resolve(path: str, *bases: Path) -> str:
    """``path`` as given if it exists (or is absolute), else under the first base that has it.

    A generated solver names its net relative to the folder it was generated
    from, an ancestor of the solver's own folder; ``bases`` lists where to look.
    """
    candidate = Path(path)
    if candidate.is_absolute() or candidate.exists():
        return str(candidate)
    for base in bases:
        if (base / candidate).exists():
            return str(base / candidate)
    return str(candidate)


def load_solver_param(solver_path: Path, max_iter: Optional[int], snapshot_prefix: Optional[str],
                      gpu: int) -> caffe_pb2.SolverParameter:
    """The solver's settings with the net path resolved and the overrides applied.

    Raises
    ------
    FileNotFoundError
        The solver or its net file is missing (Caffe would abort).
    ValueError
        The solver does not parse, or names no net.
    OSError
        The snapshot folder cannot be written.
    """
    solver_path = Path(solver_path)
    if not solver_path.is_file():
        raise FileNotFoundError(f"solver not found: {solver_path}")
    param = caffe_pb2.SolverParameter()
    try:
        text_format.Merge(solver_path.read_text(), param)
    except text_format.ParseError as error:
        raise ValueError(f"{solver_path} is not a solver prototxt: {error}") from error
    solver_dir = solver_path.resolve().parent
    if param.HasField("net"):
        param.net = resolve(param.net, solver_dir, *solver_dir.parents)
        if not Path(param.net).is_file():
            raise FileNotFoundError(f"{solver_path}: its net {param.net} was not found")
    elif not param.HasField("net_param"):
        raise ValueError(f"{solver_path} names no net (net: or net_param)")
    if max_iter is not None:
        param.max_iter = max_iter
    if snapshot_prefix is not None:
        param.snapshot_prefix = snapshot_prefix
    if not param.snapshot_prefix:
        raise ValueError(f"{solver_path} has no snapshot_prefix: give --snapshot-prefix")
    param.solver_mode = (caffe_pb2.SolverParameter.GPU if gpu >= 0
                         else caffe_pb2.SolverParameter.CPU)
    if gpu >= 0:
        param.device_id = gpu
    ensure_writable_folder(Path(param.snapshot_prefix).parent, "snapshot folder")
    return param


def train_net_param(param: caffe_pb2.SolverParameter) -> caffe_pb2.NetParameter:
    """The solver's net, checked for what would make Caffe abort while building it."""
    net = caffe_pb2.NetParameter()
    if param.HasField("net_param"):
        net.CopyFrom(param.net_param)
    else:
        try:
            text_format.Merge(Path(param.net).read_text(), net)
        except text_format.ParseError as error:
            raise NetCheckError(f"{param.net} is not a net prototxt: {error}") from error
    infer_shapes(net, caffe.TRAIN)
    return net


def make_solver(param: caffe_pb2.SolverParameter, staging_prefix: str):
    """A pycaffe solver that never snapshots by itself and snapshots to ``staging_prefix``.

    Snapshots are :class:`Snapshots`' job: Caffe writes fixed names in place.
    """
    param = caffe_pb2.SolverParameter.FromString(param.SerializeToString())
    param.snapshot = 0
    param.snapshot_prefix = staging_prefix
    param.snapshot_format = caffe_pb2.SolverParameter.BINARYPROTO
    with tempfile.NamedTemporaryFile("w", suffix=".prototxt", delete=False) as handle:
        handle.write(text_format.MessageToString(param))
    try:
        return caffe.get_solver(handle.name)
    finally:
        Path(handle.name).unlink()


def loss_outputs(net) -> dict[str, float]:
    """Each loss blob's value, weighted by its loss weight."""
    return {name: float(net.blobs[name].data) * weight
            for name, weight in net.blob_loss_weights.items() if weight != 0}


def interrupt_on_signal(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


def catch_stop_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM both end training with a snapshot.

    SIGINT is set explicitly: a process started in the background by a
    non-interactive shell inherits it ignored.
    """
    for signum in STOP_SIGNALS:
        signal.signal(signum, interrupt_on_signal)


@contextlib.contextmanager
def stop_signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM wait until the block is done, then interrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received = []
    previous = {signum: signal.signal(signum, lambda number, frame: received.append(number))
                for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if received:
        raise KeyboardInterrupt(f"signal {received[0]}")


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


def tests_before(param: caffe_pb2.SolverParameter, iteration: int) -> int:
    """How many times Caffe's Step has run the test nets before ``iteration``."""
    interval = param.test_interval
    if not interval or iteration <= 0:
        return 0
    return (iteration + interval - 1) // interval - (0 if param.test_initialization else 1)


def seek_data(solver, param: caffe_pb2.SolverParameter) -> None:
    """Point every BSDS data layer at the batch an uninterrupted run would read next."""
    position = solver.iter * max(1, param.iter_size)
    nets = [(solver.net, position)]
    for index, net in enumerate(solver.test_nets):
        test_iter = param.test_iter[index] if index < len(param.test_iter) else 0
        nets.append((net, test_iter * tests_before(param, solver.iter)))
    for net, batch in nets:
        for layer in net.layers:
            if isinstance(layer, BSDSDataLayer):
                layer.seek(batch)


def trim_log(path: Path, iteration: int) -> None:
    """Drop a loss log's rows after ``iteration`` (and a torn last line)."""
    if not path.is_file():
        return
    lines = path.read_text().splitlines(keepends=True)
    if not lines:
        return
    width = len(next(csv.reader([lines[0]])))
    kept = [lines[0]]
    for line in lines[1:]:
        row = next(csv.reader([line]), [])
        if (line.endswith("\n") and len(row) == width and row[0].isdigit()
                and int(row[0]) <= iteration):
            kept.append(line)
    if len(kept) != len(lines):
        log.info("%s: dropped %d row(s) after iteration %d", path, len(lines) - len(kept),
                 iteration)
        write_atomic(path, "".join(kept))


def set_aside_log(path: Path) -> Optional[Path]:
    """Move an earlier run's loss log out of a fresh run's way, to
    ``<stem>.<its last write, YYYYmmdd-HHMMSS>.csv`` (numbered if that is taken), and
    return where; None if there is none. A fresh run's log holds its own rows only;
    the old rows are kept (refusing would stop a rerun into the same prefix, and
    appending mixed two runs' iterations in one log)."""
    path = Path(path)
    try:
        written = path.stat().st_mtime
    except FileNotFoundError:
        return None
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(written))
    aside, number = path.with_name(f"{path.stem}.{stamp}{path.suffix}"), 1
    while aside.exists():
        number += 1
        aside = path.with_name(f"{path.stem}.{stamp}-{number}{path.suffix}")
    os.rename(path, aside)
    log.info("a fresh run: the earlier loss log %s is now %s", path, aside)
    return aside


def train(solver_path: Path, gpu: int = -1, weights: Optional[Path] = None,
          resume: Optional[Path] = None, max_iter: Optional[int] = None,
          snapshot_prefix: Optional[str] = None, log_csv: Optional[Path] = None) -> dict:
    """Run the solver to ``max_iter``; return the last iteration and its losses.

    Raises
    ------
    ValueError
        Bad arguments, a bad solver, net or weights file (NetCheckError), or a
        snapshot that cannot be resumed (SnapshotError).
    OSError
        A missing file, an unwritable snapshot folder, no room for a snapshot.
    FloatingPointError
        A non-finite loss (no snapshot: the weights are no longer finite).
    """
    if weights is not None and resume is not None:
        raise ValueError("give --weights or --resume, not both")
    if max_iter is not None and (isinstance(max_iter, bool) or int(max_iter) != max_iter
                                 or max_iter < 1):
        raise ValueError(f"--max-iter must be a whole number >= 1, got {max_iter}")
    for given in (weights, resume):
        if given is not None and not Path(given).is_file():
            raise FileNotFoundError(f"not found: {given}")
    use_device(gpu)
    param = load_solver_param(solver_path, max_iter, snapshot_prefix, gpu)
    net_param = train_net_param(param)
    if resume is not None:
        read_solverstate(resume)  # a bad file fails before the solver is built
    snapshots = Snapshots(param.snapshot_prefix, train_net_settings(net_param))
    try:
        solver = make_solver(param, snapshots.staging_prefix)
        start(solver, param, net_param, snapshots, weights, resume)
        return run(solver, param, snapshots, Path(log_csv or f"{param.snapshot_prefix}_loss.csv"),
                   resume is not None)
    finally:
        snapshots.close()


def start(solver, param, net_param, snapshots: Snapshots, weights: Optional[Path],
          resume: Optional[Path]) -> None:
    """Restore a snapshot, load weights, or set the fixed helper weights."""
    if resume is not None:
        restore(solver, param, net_param, Path(resume))
        snapshots.last = solver.iter
        seek_data(solver, param)
        log.info("resumed from %s at iteration %d", resume, solver.iter)
    elif weights is not None:
        # A shipped model holds only the deploy layers: the fixed helpers come from here.
        initialize_helper_weights(solver.net)
        check_weights_fit(solver.net, weights, complete=False)
        solver.net.copy_from(str(weights))
        log.info("initialised from %s", weights)
    else:
        frozen = frozen_batch_norm_layers(net_param)
        if frozen:
            raise ValueError(
                f"BatchNorm layers {', '.join(frozen)} use stored statistics "
                "(use_global_stats) while training, and there are no weights to take them "
                "from: pass --weights, or generate the net without frozen BatchNorm "
                "(ssn-make-prototxt --no-frozen-batch-norm)")
        names = initialize_helper_weights(solver.net)
        log.info("training from scratch%s", f"; set the fixed weights of {', '.join(names)}"
                 if names else "")


def frozen_batch_norm_layers(net_param: caffe_pb2.NetParameter) -> list[str]:
    """Names of the TRAIN net's BatchNorm layers that normalise by stored statistics."""
    return [layer.name for layer in net_param.layer
            if layer.type == "BatchNorm" and layer.batch_norm_param.use_global_stats]


def run(solver, param, snapshots: Snapshots, log_csv: Path, resumed: bool) -> dict:
    """The training loop: steps, the loss log, and every snapshot."""
    histories = 2 if solver_type(param) in TWO_HISTORIES else 1

    def snapshot(why: str) -> None:
        if snapshots.last == solver.iter:
            log.info("%s snapshot: %s (already written)", why, snapshots.paths(solver.iter)[1])
            return
        model, state = snapshots.write(solver, histories)
        log.info("%s snapshot: %s, %s", why, model, state)

    if resumed:
        trim_log(log_csv, solver.iter)
    else:
        set_aside_log(log_csv)
    catch_stop_signals()
    losses: dict[str, float] = {}
    with open(log_csv, "a", newline="") as stream:
        progress = tqdm(total=param.max_iter, initial=solver.iter, unit="it",
                        disable=not sys.stderr.isatty(), file=sys.stderr)
        try:
            while solver.iter < param.max_iter:
                began = time.perf_counter()
                solver.step(1)
                losses = loss_outputs(solver.net)
                total = sum(losses.values())
                lines = io.StringIO()
                if stream.tell() == 0:
                    csv.writer(lines).writerow(["iteration", "loss", *losses, "seconds"])
                csv.writer(lines).writerow([solver.iter, f"{total:.6g}",
                                            *(f"{v:.6g}" for v in losses.values()),
                                            f"{time.perf_counter() - began:.3f}"])
                stream.write(lines.getvalue())  # one write, so a kill rarely tears a row
                stream.flush()
                progress.update(1)
                progress.set_postfix(loss=f"{total:.4g}")
                if not math.isfinite(total):
                    raise FloatingPointError(f"loss is {total} at iteration {solver.iter}; the "
                                             "weights are no longer finite, so no snapshot was "
                                             "written: resume from the last one")
                if param.snapshot and solver.iter % param.snapshot == 0:
                    snapshot("periodic")
            if param.snapshot_after_train:
                snapshot("final")
        except KeyboardInterrupt:
            log.warning("interrupted at iteration %d: writing a snapshot", solver.iter)
            snapshot("interrupt")
        except FloatingPointError:
            raise
        except Exception as error:
            log.error("training stopped at iteration %d by %s: %s", solver.iter,
                      type(error).__name__, error)
            try:
                snapshot("last completed iteration")
            except Exception as failure:  # noqa: BLE001 - report, then raise the first error
                log.error("could not write a snapshot: %s", failure)
            raise
        finally:
            progress.close()
    return dict(iteration=solver.iter, losses=losses, log=str(log_csv),
                snapshot_prefix=param.snapshot_prefix)
