"""superpixels() under threads and forks: threads of one process get what
serial calls give, and a child forked after the parent used the nets works instead
of hanging in libgomp.

Each case runs in a subprocess with a timeout, so a hang fails the test instead of
hanging pytest. Images are BSDS-sized (481 x 321) or above the tiling limit
(:data:`ssn.tiling.TILE_PIXELS`).
"""
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from ssn.inference import bundled_weights

REPO = Path(__file__).resolve().parent.parent
TIMEOUT_S = 600

PRELUDE = """
import json
import threading

import numpy as np
from skimage import data, transform

from ssn.inference import superpixels


def picture(name, height, width):
    image = getattr(data, name)()[..., :3]
    image = transform.resize(image, (height, width), anti_aliasing=True)
    return (255 * image).astype(np.uint8)


def in_threads(images, calls, **kwargs):
    '''Two threads, one per image, each calling superpixels() `calls` times: how many
    results differ from a serial call's, and the errors.'''
    serial = [superpixels(image, **kwargs) for image in images]
    found = dict(wrong=0, errors=[])

    def work(index):
        for _ in range(calls):
            try:
                labels = superpixels(images[index], **kwargs)
            except Exception as error:
                found["errors"].append(f"{type(error).__name__}: {error}")
                continue
            if not np.array_equal(labels, serial[index]):
                found["wrong"] += 1

    threads = [threading.Thread(target=work, args=(index,)) for index in range(len(images))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return found
"""


def run_script(code: str, timeout: float = TIMEOUT_S) -> dict:
    """Run PRELUDE + code in a fresh interpreter; return the JSON of its last line."""
    try:
        result = subprocess.run([sys.executable, "-c", PRELUDE + textwrap.dedent(code)],
                                capture_output=True, text=True, cwd=REPO, timeout=timeout)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"hung: no result within {timeout} s\n{error.stderr or ''}")
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def needs_weights():
    if bundled_weights() is None:
        pytest.skip("needs the bundled model")


@pytest.mark.slow
@pytest.mark.parametrize("features,calls", [("pixel", 20), ("deep", 6)])
def test_threads_get_their_own_labels(features, calls):
    """Two images of one size in two threads: every result is the serial one."""
    if features == "deep":
        needs_weights()
    found = run_script(f"""
        images = [picture("astronaut", 321, 481), picture("coffee", 321, 481)]
        print(json.dumps(in_threads(images, {calls}, n_segments=200,
                                    features={features!r})))
    """)
    assert found == dict(wrong=0, errors=[])


@pytest.mark.slow
def test_threads_above_the_tiling_limit():
    """Tiled deep features (the tiling's own cached net), two sizes over the limit."""
    needs_weights()
    found = run_script("""
        from ssn.tiling import TILE_PIXELS
        images = [picture("astronaut", 700, 640), picture("coffee", 600, 760)]
        assert all(image.shape[0] * image.shape[1] > TILE_PIXELS for image in images)
        print(json.dumps(in_threads(images, 2, n_segments=300, features="deep")))
    """)
    assert found == dict(wrong=0, errors=[])


FORKED = """
import multiprocessing

from threadpoolctl import threadpool_limits

images = [picture("astronaut", 321, 481), picture("coffee", 321, 481),
          picture("chelsea", 321, 481)]
KWARGS = dict(n_segments=200, features={features!r})


def label(index):
    return superpixels(images[index], **KWARGS)


# A forked child runs one OpenMP thread: the reference is one thread's.
with threadpool_limits(limits=1):
    serial = [label(index) for index in range(len(images))]
with threadpool_limits(limits=2):  # the parent's OpenMP pool: more than one thread
    label(0)
{before_fork}
with multiprocessing.get_context("fork").Pool(2) as pool:
    forked = pool.map_async(label, range(len(images))).get(timeout=120)
{after_fork}
print(json.dumps(dict(same=[bool(np.array_equal(a, b)) for a, b in zip(forked, serial)])))
"""


@pytest.mark.slow
@pytest.mark.parametrize("features", ["pixel", "deep"])
def test_forked_workers_after_a_parent_call(features):
    """multiprocessing's 'fork' Pool after the parent called superpixels(): no hang, and
    the serial labels."""
    if features == "deep":
        needs_weights()
    found = run_script(FORKED.format(features=features, before_fork="", after_fork=""))
    assert found == dict(same=[True, True, True])


@pytest.mark.slow
def test_fork_while_another_thread_is_in_the_nets():
    """A thread of the parent holds the nets' lock at the fork: the child still runs."""
    found = run_script(FORKED.format(features="pixel", before_fork=textwrap.dedent("""
        busy = threading.Event()
        stop = threading.Event()

        def keep_busy():
            while not stop.is_set():
                busy.set()
                label(1)

        worker = threading.Thread(target=keep_busy, daemon=True)
        worker.start()
        busy.wait()
    """), after_fork="stop.set()\nworker.join()"))
    assert found == dict(same=[True, True, True])


@pytest.mark.slow
def test_a_child_forked_from_a_gpu_process_refuses_clearly():
    """CUDA does not survive a fork: a RuntimeError naming 'spawn', not a crash or hang.
    (Simulated: the flag use_device sets for a GPU.)"""
    found = run_script("""
        import os
        from ssn import device
        image = picture("astronaut", 64, 96)
        superpixels(image, n_segments=20, features="pixel")
        device._gpu["used"] = True
        pid = os.fork()
        if pid == 0:
            try:
                superpixels(image, n_segments=20, features="pixel")
                os._exit(3)
            except RuntimeError as error:
                os._exit(0 if "'spawn'" in str(error) else 4)
        _, status = os.waitpid(pid, 0)
        print(json.dumps(dict(code=os.waitstatus_to_exitcode(status))))
    """)
    assert found == dict(code=0)
