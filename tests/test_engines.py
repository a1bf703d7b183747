"""ssn-infer on worker processes and on a Dask cluster: the same files and the
same summary as one process, a killed worker's images redone, a rerun doing only what is
missing.

Labels depend (in a pixel or two per image, float sums split by thread) on the
OpenMP/BLAS threads per process, so every run here uses one thread per process.
Each run is bounded by TIMEOUT_S; the clusters listen on 127.0.0.1 only.
"""
import json
import logging
import os
import shutil
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from skimage import data
from skimage import io as skio

from ssn.cli.infer import main as infer_main

distributed = pytest.importorskip("distributed")

SAMPLE_ROOT = Path(__file__).resolve().parent.parent / "data" / "bsds_sample"
TIMEOUT_S = 300
ONE_THREAD = ["--threads", "1"]


def run_infer(args, timeout=TIMEOUT_S) -> int:
    """infer_main(args), failing the test (not hanging it) after ``timeout`` seconds."""
    result = {}

    def target():
        result["code"] = infer_main([str(arg) for arg in args])

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"ssn-infer did not finish within {timeout} s"
    return result["code"]


def local_cluster(**kwargs):
    options = dict(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                   protocol="tcp://", dashboard_address="127.0.0.1:0", memory_limit=0,
                   silence_logs=logging.ERROR)
    return distributed.LocalCluster(**{**options, **kwargs})


@pytest.fixture(scope="module")
def cluster():
    with local_cluster() as cluster:
        yield cluster


@pytest.fixture(scope="module")
def pictures(tmp_path_factory) -> Path:
    """The seven sample images (three sizes) and a corrupt one."""
    folder = tmp_path_factory.mktemp("pictures")
    for image in sorted(SAMPLE_ROOT.glob("images/*/*.jpg")):
        shutil.copy(image, folder / image.name)
    (folder / "corrupt.jpg").write_bytes(b"not a jpeg")
    return folder


def settings(features):
    return ["--n-segments", "30", "--num-steps", "3", "--features", features]


@pytest.fixture(scope="module")
def references(tmp_path_factory, pictures):
    """One process, one thread: the results every engine must reproduce, per mode."""
    outs = {}
    for features in ("pixel", "deep"):
        out = tmp_path_factory.mktemp(f"one_process_{features}")
        assert run_infer([pictures, "--out", out, *settings(features), "--workers", "1",
                          *ONE_THREAD]) == 1  # the corrupt image
        outs[features] = out
    return outs


def comparable(row: dict) -> dict:
    return {key: value for key, value in row.items() if key != "seconds"}


def assert_same_results(out: Path, reference: Path) -> None:
    """The same files with the same bytes (records and summaries up to timings)."""
    def files(folder):
        return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*")
                      if p.is_file() and not p.name.startswith("."))

    assert files(out) == files(reference)
    for name in files(reference):
        if name.endswith((".npy", ".png")):
            assert (out / name).read_bytes() == (reference / name).read_bytes(), name
        elif name.endswith(".ssn.json"):
            ours, theirs = (json.loads((folder / name).read_text()) for folder in (out,
                                                                                  reference))
            for record in (ours, theirs):
                for key in ("seconds", "host", "threads"):
                    record.pop(key, None)
            assert ours == theirs, name
    rows = [[comparable(row) for row in json.loads((folder / "summary.json").read_text())]
            for folder in (out, reference)]
    assert rows[0] == rows[1]


@pytest.mark.slow
@pytest.mark.parametrize("features", ["pixel", "deep"])
def test_worker_processes_write_what_one_process_writes(tmp_path, pictures, references,
                                                        features):
    out = tmp_path / "out"
    assert run_infer([pictures, "--out", out, *settings(features), "--workers", "2",
                      *ONE_THREAD]) == 1
    assert_same_results(out, references[features])


@pytest.mark.slow
@pytest.mark.parametrize("features", ["pixel", "deep"])
def test_a_dask_cluster_writes_what_one_process_writes(tmp_path, pictures, references,
                                                       cluster, features):
    out = tmp_path / "out"
    assert run_infer([pictures, "--out", out, *settings(features), "--scheduler",
                      cluster.scheduler_address, *ONE_THREAD]) == 1
    assert_same_results(out, references[features])


@pytest.mark.slow
def test_dask_flag_runs_a_local_cluster(tmp_path, pictures, references):
    out = tmp_path / "out"
    assert run_infer([pictures, "--out", out, *settings("pixel"), "--dask", "--workers", "2",
                      *ONE_THREAD]) == 1
    assert_same_results(out, references["pixel"])


@pytest.mark.slow
def test_a_rerun_on_dask_completes_only_what_is_missing(tmp_path, pictures, references,
                                                        cluster, caplog):
    out = tmp_path / "out"
    shutil.copytree(references["pixel"], out)
    (out / "9001.npy").write_bytes(b"")       # truncated: recomputed
    (out / "9010.ssn.json").unlink()          # no record: recomputed
    caplog.set_level(logging.INFO)
    assert run_infer([pictures, "--out", out, *settings("pixel"), "--scheduler",
                      cluster.scheduler_address, *ONE_THREAD]) == 1
    # The two damaged ones and the corrupt image (failures are always retried).
    assert "3 image(s) computed" not in caplog.text
    assert "2 image(s) computed" in caplog.text and "5 verified and kept, 1 failed" in caplog.text
    assert_same_results(out, references["pixel"])


@pytest.fixture(scope="module")
def bigger_pictures(tmp_path_factory):
    """Twelve 256 x 384 images: enough work to kill a worker in the middle of it."""
    folder = tmp_path_factory.mktemp("bigger")
    source = data.astronaut()
    for index in range(12):
        picture = np.roll(source, 37 * index, axis=index % 2)[::2, :384 * 2:2][:256]
        skio.imsave(folder / f"im{index:02d}.png", picture, check_contrast=False)
    reference = tmp_path_factory.mktemp("bigger_one_process")
    assert run_infer([folder, "--out", reference, *settings("pixel"), "--workers", "1",
                      *ONE_THREAD]) == 0
    return folder, reference


@pytest.mark.slow
def test_a_killed_worker_does_not_lose_images(tmp_path, bigger_pictures, cluster):
    folder, reference = bigger_pictures
    out = tmp_path / "out"
    killed = {}
    with distributed.Client(cluster) as watcher:
        pids = watcher.run(os.getpid)

        def kill_a_busy_worker():
            deadline = time.monotonic() + TIMEOUT_S
            while time.monotonic() < deadline and not killed:
                busy = [address for address, keys in watcher.processing().items()
                        if keys and address in pids]
                done = len(list(out.glob("*.ssn.json"))) if out.exists() else 0
                if busy and done:
                    os.kill(pids[busy[0]], signal.SIGKILL)
                    killed.update(address=busy[0], done=done)
                time.sleep(0.01)

        thread = threading.Thread(target=kill_a_busy_worker, daemon=True)
        thread.start()
        assert run_infer([folder, "--out", out, *settings("pixel"), "--scheduler",
                          cluster.scheduler_address, *ONE_THREAD]) == 0
        thread.join(10)
    assert killed, "no worker was killed"
    assert killed["done"] < 12, "the run ended before the kill"
    assert_same_results(out, reference)


@pytest.mark.slow
def test_a_worker_process_that_cannot_run_stops_the_run(tmp_path, pictures):
    """The worker processes check the device themselves; their RunError ends the run."""
    from ssn.device import caffe_has_gpu
    from ssn.infer.engines import run_processes
    from ssn.infer.inputs import assign_names
    from ssn.infer.job import Job, RunError
    from ssn.infer.task import TASKS, make_settings
    if caffe_has_gpu():
        pytest.skip("needs a CPU-only Caffe")
    settings, _ = make_settings(30, 3, "pixel", None, True, 0.06, 3.0)
    job = Job(str(tmp_path), settings, None, gpu=0, threads=1)
    items = assign_names(sorted(pictures.glob("*.jpg")))
    with pytest.raises(RunError, match="built CPU-only"):
        list(run_processes(TASKS, job, items, 2))
    assert not list(tmp_path.iterdir())


@pytest.mark.slow
def test_a_dask_worker_without_the_device_stops_the_run(tmp_path, pictures, monkeypatch,
                                                        caplog):
    """--scheduler leaves the device to the workers; one that lacks it says so (exit 2).
    In-process workers, so that they see the CPU-only build this test pretends."""
    from ssn import device
    monkeypatch.setattr(device, "caffe_has_gpu", lambda: False)
    with local_cluster(processes=False, n_workers=1) as cluster:
        assert run_infer([pictures, "--out", tmp_path / "out", *settings("pixel"), "--gpu",
                          "0", "--scheduler", cluster.scheduler_address]) == 2
    assert "built CPU-only" in caplog.text
    assert not list((tmp_path / "out").glob("*.npy"))


@pytest.mark.slow
def test_an_unreachable_scheduler_is_one_clear_error(tmp_path, pictures, caplog, monkeypatch):
    from ssn.infer import engines
    monkeypatch.setattr(engines, "DASK_CONNECT_TIMEOUT_S", 2)
    assert run_infer([pictures, "--out", tmp_path / "out", *settings("pixel"),
                      "--scheduler", "tcp://127.0.0.1:9"]) == 2
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in caplog.text
