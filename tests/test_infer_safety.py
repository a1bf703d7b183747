"""ssn-infer stopped by signals, and given options that can never work.

- SIGTERM, SIGINT or SIGKILL to ``ssn-infer --workers 2`` leaves no process behind
  (workers, multiprocessing's resource tracker); SIGTERM and SIGINT exit 143 and 130
  with the finished results and the summary kept, and no temporary file left.
- An option that can never work (a count of 0, an infinite size factor, weights of
  another net) is one message and exit 2 before any work: nothing is deleted, with
  or without --overwrite.

The signalled runs are subprocesses in their own process group, bounded by timeouts.
"""
import json
import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from skimage import data, transform
from skimage import io as skio

from ssn.cli.infer import main as infer_main
from ssn.inference import bundled_weights

REPO = Path(__file__).resolve().parent.parent
SAMPLE_VAL = REPO / "data" / "bsds_sample" / "images" / "val"
SETTINGS = ["--n-segments", "30", "--num-steps", "3", "--features", "pixel", "--workers", "1"]
START_TIMEOUT_S = 300  # until the workers have finished an image (a busy machine)
# From the signal until no process of the run is left: a worker in a forward finishes it
# first (about a second, several on a busy machine).
GONE_TIMEOUT_S = 30


# --------------------------------------------------------------------------------------------
# Signals


@pytest.fixture(scope="module")
def many_pictures(tmp_path_factory) -> Path:
    """Sixteen BSDS-sized (321 x 481) images: work for two workers for a while."""
    folder = tmp_path_factory.mktemp("pictures")
    sources = [data.astronaut(), data.coffee(), data.chelsea()[..., :3]]
    for index in range(16):
        picture = transform.resize(sources[index % 3], (321, 481), anti_aliasing=True)
        picture = np.roll((255 * picture).astype(np.uint8), 29 * index, axis=1)
        skio.imsave(folder / f"im{index:02d}.png", picture, check_contrast=False)
    return folder


def group_processes(group: int) -> list[tuple[int, str]]:
    """(pid, command line) of the live (not zombie) processes in a process group."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if fields[0] != "Z" and int(fields[2]) == group:
            found.append((int(entry.name), command.strip()))
    return found


def wait_for(condition, timeout: float, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    return condition()


def records(out: Path) -> set[str]:
    return {path.name for path in out.glob("*.ssn.json")} if out.exists() else set()


def signalled_run(folder: Path, out: Path, signum: int, log: Path):
    """Start ssn-infer --workers 2 in its own process group; once both workers run and
    one image is done, send ``signum`` to the parent alone. Returns (exit status,
    records at the signal, processes left GONE_TIMEOUT_S later)."""
    features = ["--features", "deep"] if bundled_weights() else ["--features", "pixel"]
    with open(log, "w") as stream:
        parent = subprocess.Popen(
            [sys.executable, "-m", "ssn.cli.infer", str(folder), "--out", str(out),
             "--n-segments", "200", *features, "--workers", "2", "--threads", "1"],
            cwd=REPO, stdout=stream, stderr=subprocess.STDOUT, start_new_session=True)
    group = parent.pid
    try:
        def started():
            workers = [pid for pid, command in group_processes(group)
                       if "spawn_main" in command and pid != parent.pid]
            return len(workers) >= 2 and records(out)

        assert wait_for(started, START_TIMEOUT_S), \
            f"the workers did not start and finish an image:\n{log.read_text()[-3000:]}"
        assert parent.poll() is None, "the run ended before the signal"
        done = records(out)
        os.kill(parent.pid, signum)
        status = parent.wait(timeout=60)
        left = wait_for(lambda: not group_processes(group), GONE_TIMEOUT_S)
        return status, done, [] if left else group_processes(group)
    finally:  # whatever happened, nothing of this run outlives the test
        try:
            os.killpg(group, signal.SIGKILL)
        except ProcessLookupError:
            pass
        parent.wait(timeout=60)


def temporary_files(out: Path) -> list[str]:
    return [path.name for path in out.rglob(".*") if ".tmp" in path.name]


@pytest.mark.slow
@pytest.mark.parametrize("signum,code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_sigterm_stops_the_workers_and_keeps_the_results(tmp_path, many_pictures, signum,
                                                         code):
    out = tmp_path / "out"
    status, done, left = signalled_run(many_pictures, out, signum, tmp_path / "log")
    assert left == [], f"processes left after {signal.Signals(signum).name}: {left}"
    assert status == code, (tmp_path / "log").read_text()[-3000:]
    assert done <= records(out), "finished results were lost"
    listed = {row["output"] for row in json.loads((out / "summary.json").read_text())}
    assert {name.removesuffix(".ssn.json") for name in done} <= listed
    assert temporary_files(out) == []


@pytest.mark.slow
def test_sigkill_leaves_no_worker_behind(tmp_path, many_pictures):
    out = tmp_path / "out"
    status, done, left = signalled_run(many_pictures, out, signal.SIGKILL, tmp_path / "log")
    assert status == -signal.SIGKILL
    assert left == [], f"processes left after SIGKILL: {left}"
    assert done <= records(out), "finished results were lost"
    assert temporary_files(out) == []


# --------------------------------------------------------------------------------------------
# Options that can never work


def snapshot(folder: Path) -> dict[str, bytes]:
    return {path.relative_to(folder).as_posix(): path.read_bytes()
            for path in sorted(folder.rglob("*")) if path.is_file()}


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> tuple[list[Path], Path]:
    """Three sample images and an --out with their verified results."""
    images = sorted(SAMPLE_VAL.glob("*.jpg"))[:3]
    out = tmp_path_factory.mktemp("finished")
    assert infer_main([*map(str, images), "--out", str(out), *SETTINGS]) == 0
    return images, out


@pytest.fixture(scope="module")
def other_weights(tmp_path_factory) -> Path:
    """A .caffemodel of another net: the feature CNN with 15 channels, not 20."""
    import caffe

    from ssn.nets.generators import feature_net
    folder = tmp_path_factory.mktemp("other_weights")
    (folder / "net.prototxt").write_text(str(feature_net(32, 32, 15)))
    net = caffe.Net(str(folder / "net.prototxt"), caffe.TEST)
    net.save(str(folder / "other.caffemodel"))
    return folder / "other.caffemodel"


BAD_OPTIONS = {
    "no segments": (["--n-segments", "0"], "--n-segments"),
    "no steps": (["--num-steps", "0"], "--num-steps"),
    "infinite max size": (["--max-size-factor", "inf"], "max_size_factor"),
    "NaN min size": (["--min-size-factor", "nan"], "min_size_factor"),
    "sizes out of order": (["--min-size-factor", "4", "--max-size-factor", "3"],
                           "min_size_factor <= max_size_factor"),
    "weights of another net": (["--features", "deep", "--weights", "OTHER"], "other.caffemodel"),
}


def run_infer(argv: list, caplog, capsys) -> tuple[int, list[str]]:
    """ssn-infer's exit status and error messages: logged, or the one line of its parser
    when that refuses an argument."""
    caplog.set_level(logging.ERROR)
    try:
        code = infer_main(argv)
    except SystemExit as stop:
        return stop.code, [line for line in capsys.readouterr().err.splitlines()
                           if "error:" in line]
    return code, [record.getMessage() for record in caplog.records
                  if record.levelno >= logging.ERROR]


@pytest.mark.parametrize("overwrite", [True, False], ids=["overwrite", "keep"])
@pytest.mark.parametrize("case", BAD_OPTIONS)
def test_an_option_that_can_never_work_changes_nothing(tmp_path, finished, other_weights,
                                                       caplog, capsys, case, overwrite):
    images, done = finished
    out = tmp_path / "out"
    shutil.copytree(done, out)
    before = snapshot(out)
    options, named = BAD_OPTIONS[case]
    options = [str(other_weights) if option == "OTHER" else option for option in options]
    code, errors = run_infer([*map(str, images), "--out", str(out), *SETTINGS, *options,
                              *(["--overwrite"] if overwrite else [])], caplog, capsys)
    assert code == 2
    assert snapshot(out) == before
    assert len(errors) == 1 and named in errors[0], errors


@pytest.mark.parametrize("case", ["no segments", "infinite max size",
                                  "weights of another net"])
def test_an_option_that_can_never_work_stops_a_fresh_run(tmp_path, finished, other_weights,
                                                         caplog, capsys, case):
    """Not one failure per image (exit 1): one message, exit 2, nothing written."""
    images, _ = finished
    options, named = BAD_OPTIONS[case]
    options = [str(other_weights) if option == "OTHER" else option for option in options]
    out = tmp_path / "fresh"
    code, errors = run_infer([*map(str, images), "--out", str(out), *SETTINGS, *options],
                             caplog, capsys)
    assert code == 2
    assert not out.exists() or snapshot(out) == {}
    assert len(errors) == 1 and named in errors[0], errors
