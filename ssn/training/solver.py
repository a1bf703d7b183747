"""Train an SSN from a solver prototxt with pycaffe, never losing finished work.

This module is the training loop (:func:`train`); its parts live beside it:

* :mod:`ssn.training.snapshots`: snapshots every ``snapshot`` iterations, at the
  end (``snapshot_after_train``), on a stop and when any exception stops
  training (of the last completed iteration; not after a non-finite loss, whose
  weights are lost), each written whole with its metadata file
  (``<prefix>_iter_<N>.json``, :mod:`ssn.model_metadata`: the position weight
  and colour scale it was trained at; its count calibration is left to
  ``ssn-bench-calibration``). ``resume`` checks the ``.solverstate`` and its
  ``.caffemodel`` there first.
* :mod:`ssn.training.signals`: Ctrl-C and SIGTERM end a run with a snapshot.
* :mod:`ssn.training.loss_log`: each iteration's losses go to a CSV log; a
  resumed run drops the log rows after its snapshot, which it computes again.

A resumed run continues the data sequence: batch ``iteration * iter_size`` is
the next one (test nets: ``test_iter`` batches per test run so far). The names
that moved to those modules can still be imported from here.
"""
from __future__ import annotations

import csv
import io
import logging
import math
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format
from tqdm import tqdm

from ssn.atomic import ensure_writable_folder
from ssn.device import use_device
from ssn.model_metadata import train_net_settings
from ssn.nets.checked import check_weights_fit
from ssn.nets.errors import NetCheckError
from ssn.nets.shape_inference import infer_shapes
from ssn.nets.weights import initialize_helper_weights
from ssn.training.data_layer import BSDSDataLayer
from ssn.training.loss_log import set_aside_log, trim_log
from ssn.training.signals import (  # noqa: F401 - re-exported: they were defined here
    STOP_SIGNALS,
    catch_stop_signals,
    interrupt_on_signal,
    stop_signals_deferred,
)
from ssn.training.snapshots import (  # noqa: F401 - re-exported: they were defined here
    STAGING_PREFIX,
    TWO_HISTORIES,
    SnapshotError,
    Snapshots,
    learnable_shapes,
    process_exists,
    read_solverstate,
    remove_stale_staging,
    reserve,
    restore,
    snapshot_model,
    solver_type,
)

log = logging.getLogger("ssn.training.solver")


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
