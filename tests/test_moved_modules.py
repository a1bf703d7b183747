"""Modules that moved keep their old import paths, as the very same modules."""
from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

MOVED = {
    "ssn.nets.downstream": "ssn.examples.downstream.net",
    "ssn.training.task_labels": "ssn.examples.downstream.labels",
    "ssn.evaluation.task": "ssn.examples.downstream.evaluation",
    "ssn.synthflow": "ssn.examples.synthflow",
    "ssn.training.gpu_runs": "ssn.examples.gpu_runs",
}


@pytest.mark.parametrize("old", sorted(MOVED))
def test_an_old_module_path_gives_the_moved_module(old):
    assert importlib.import_module(old) is importlib.import_module(MOVED[old])


def test_a_saved_prototxt_finds_the_task_layer_under_its_old_module():
    """Caffe's Python layer imports the module a prototxt names, then takes the class."""
    layer = importlib.import_module("ssn.training.task_labels").SegmentLightnessLayer
    assert layer is importlib.import_module("ssn.examples.downstream.labels").SegmentLightnessLayer


@pytest.mark.slow
def test_the_old_gpu_runs_command_still_runs():
    result = subprocess.run([sys.executable, "-m", "ssn.training.gpu_runs", "--help"],
                            capture_output=True, text=True, check=False)
    assert result.returncode == 0, result.stderr
    assert "--out" in result.stdout


@pytest.mark.parametrize("name", ["infer_shapes", "check_layer_params", "check_index_inputs",
                                  "check_blob_sizes", "check_grid_fits", "GridFitWarning",
                                  "layers_for_phase", "blob_values", "CONVOLUTIONS"])
def test_the_net_checks_keep_their_old_names(name):
    checks = importlib.import_module("ssn.nets.checks")
    assert getattr(checks, name) is not None
    assert name in checks.__all__


@pytest.mark.parametrize("name", ["Snapshots", "SnapshotError", "read_solverstate",
                                  "snapshot_model", "restore", "catch_stop_signals",
                                  "stop_signals_deferred", "trim_log", "set_aside_log", "train"])
def test_the_solver_keeps_its_old_names(name):
    assert hasattr(importlib.import_module("ssn.training.solver"), name)
