"""Train an SSN from a solver prototxt with pycaffe.

Snapshots come from the solver's ``snapshot`` setting, and one more is written
when training stops on Ctrl-C or SIGTERM. Each iteration's losses go to a CSV log.
"""
from __future__ import annotations

import csv
import logging
import math
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Optional

import caffe
from caffe.proto import caffe_pb2
from google.protobuf import text_format
from tqdm import tqdm

from ssn.device import use_device
from ssn.nets.weights import initialize_helper_weights

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
    """The solver's settings with the net path resolved and the overrides applied."""
    param = caffe_pb2.SolverParameter()
    text_format.Merge(solver_path.read_text(), param)
    solver_dir = solver_path.resolve().parent
    param.net = resolve(param.net, solver_dir, *solver_dir.parents)
    if max_iter is not None:
        param.max_iter = max_iter
    if snapshot_prefix is not None:
        param.snapshot_prefix = snapshot_prefix
    param.solver_mode = (caffe_pb2.SolverParameter.GPU if gpu >= 0
                         else caffe_pb2.SolverParameter.CPU)
    if gpu >= 0:
        param.device_id = gpu
    Path(param.snapshot_prefix).parent.mkdir(parents=True, exist_ok=True)
    return param


def make_solver(param: caffe_pb2.SolverParameter):
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


def catch_stop_signals() -> None:
    """Ctrl-C (SIGINT) and SIGTERM both end training with a snapshot.

    SIGINT is set explicitly: a process started in the background by a
    non-interactive shell inherits it ignored.
    """
    signal.signal(signal.SIGINT, interrupt_on_signal)
    signal.signal(signal.SIGTERM, interrupt_on_signal)


def snapshot_paths(param: caffe_pb2.SolverParameter, iteration: int) -> tuple[Path, Path]:
    prefix = f"{param.snapshot_prefix}_iter_{iteration}"
    return Path(prefix + ".caffemodel"), Path(prefix + ".solverstate")


def train(solver_path: Path, gpu: int = -1, weights: Optional[Path] = None,
          resume: Optional[Path] = None, max_iter: Optional[int] = None,
          snapshot_prefix: Optional[str] = None, log_csv: Optional[Path] = None) -> dict:
    """Run the solver to ``max_iter``; return the last iteration and its losses."""
    if weights is not None and resume is not None:
        raise ValueError("give --weights or --resume, not both")
    for given in (weights, resume):
        if given is not None and not Path(given).is_file():
            raise FileNotFoundError(f"not found: {given}")
    use_device(gpu)
    param = load_solver_param(solver_path, max_iter, snapshot_prefix, gpu)
    solver = make_solver(param)
    if resume is not None:
        solver.restore(str(resume))
        log.info("resumed from %s at iteration %d", resume, solver.iter)
    elif weights is not None:
        # A shipped model holds only the deploy layers: the fixed helpers come from here.
        initialize_helper_weights(solver.net)
        solver.net.copy_from(str(weights))
        log.info("initialised from %s", weights)
    else:
        names = initialize_helper_weights(solver.net)
        log.info("training from scratch; set the fixed weights of %s", ", ".join(names))
    log_csv = Path(log_csv or f"{param.snapshot_prefix}_loss.csv")
    catch_stop_signals()
    losses: dict[str, float] = {}
    with open(log_csv, "a", newline="") as stream:
        writer = None
        progress = tqdm(total=param.max_iter, initial=solver.iter, unit="it",
                        disable=not sys.stderr.isatty(), file=sys.stderr)
        try:
            while solver.iter < param.max_iter:
                start = time.perf_counter()
                solver.step(1)
                losses = loss_outputs(solver.net)
                total = sum(losses.values())
                if writer is None:
                    writer = csv.writer(stream)
                    if stream.tell() == 0:
                        writer.writerow(["iteration", "loss", *losses, "seconds"])
                writer.writerow([solver.iter, f"{total:.6g}",
                                 *(f"{v:.6g}" for v in losses.values()),
                                 f"{time.perf_counter() - start:.3f}"])
                stream.flush()
                progress.update(1)
                progress.set_postfix(loss=f"{total:.4g}")
                if not math.isfinite(total):
                    raise FloatingPointError(f"loss is {total} at iteration {solver.iter}")
        except KeyboardInterrupt:
            log.warning("interrupted at iteration %d: writing a snapshot", solver.iter)
            solver.snapshot()
        finally:
            progress.close()
    if solver.iter >= param.max_iter and param.snapshot_after_train:
        log.info("final snapshot: %s", snapshot_paths(param, solver.iter)[0])
    return dict(iteration=solver.iter, losses=losses, log=str(log_csv),
                snapshot_prefix=param.snapshot_prefix)
