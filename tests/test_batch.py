"""Batch inference (ssn-infer) trusts nothing it did not verify.

Every test runs the command in this process with --workers 1 unless it says
otherwise, on the tiny committed sample or synthetic images.
"""
import errno
import json
import logging
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from skimage import data
from skimage import io as skio

from ssn.atomic import sha256_of
from ssn.cli.infer import main as infer_main
from ssn.images import read_image
from ssn.infer import outputs, task
from ssn.infer.inputs import assign_names, is_output
from ssn.infer.job import Item
from ssn.infer.records import verify
from ssn.inference import superpixels

SETTINGS = ["--n-segments", "30", "--num-steps", "3", "--features", "pixel", "--workers", "1"]


def infer(images, out, *extra):
    """ssn-infer's exit status (2 also where its parser refuses an argument)."""
    try:
        return infer_main([str(image) for image in images] + ["--out", str(out), *SETTINGS,
                                                              *map(str, extra)])
    except SystemExit as stop:
        return stop.code


def expected_labels(image, n_segments=30):
    return superpixels(read_image(image), n_segments, num_steps=3, features="pixel")


def visible_files(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")
            if p.is_file() and not p.name.startswith(".")}


def hidden_files(folder: Path) -> list[Path]:
    return [p for p in folder.rglob(".*")]


def summary(out: Path) -> dict[str, dict]:
    return {row["output"]: row for row in json.loads((out / "summary.json").read_text())}


@pytest.fixture
def images(val_images):
    return val_images[:3]


# --------------------------------------------------------------------------------------------
# Records: what made each output


def test_each_output_records_its_settings(tmp_path, images):
    out = tmp_path / "out"
    assert infer(images, out) == 0
    record = json.loads((out / f"{images[0].stem}.ssn.json").read_text())
    assert record["status"] == "ok" and record["image"] == str(images[0])
    assert record["settings"] == dict(n_segments=30, grid="calibrated", fused=True, num_steps=3,
                                      features="pixel",
                                      weights_sha256=None, connectivity=True,
                                      min_size_factor=0.06, max_size_factor=3.0,
                                      version=record["settings"]["version"],
                                      model_sha256=record["settings"]["model_sha256"])
    assert len(record["settings"]["model_sha256"]) == 16
    assert set(record["files"]) == {"npy", "labels_png", "overlay_png"}
    np.testing.assert_array_equal(np.load(out / f"{images[0].stem}.npy"),
                                  expected_labels(images[0]))


def test_deep_records_hash_the_weights(tmp_path, images):
    out = tmp_path / "out"
    assert infer_main([str(images[0]), "--out", str(out), "--n-segments", "30",
                       "--num-steps", "2", "--features", "deep", "--workers", "1"]) == 0
    settings = json.loads((out / f"{images[0].stem}.ssn.json").read_text())["settings"]
    from ssn.inference import bundled_weights
    assert settings["weights_sha256"] == sha256_of(bundled_weights())


def test_other_settings_into_one_out_are_refused_and_overwrite_recomputes(
        tmp_path, images, caplog):
    out = tmp_path / "out"
    assert infer(images, out) == 0
    before = {p: p.read_bytes() for p in out.iterdir()}
    caplog.clear()
    for other in (["--n-segments", "40"], ["--num-steps", "4"], ["--no-connectivity"],
                  ["--min-size-factor", "0.1"], ["--position-weight", "2"]):
        assert infer(images, out, *other) == 2
        assert "holds results this run would replace" in caplog.text
        assert "--overwrite" in caplog.text
        assert {p: p.read_bytes() for p in out.iterdir()} == before  # nothing touched
    # A new image with other settings is refused too: config.json says how --out was made.
    new = tmp_path / "new.png"
    skio.imsave(new, data.camera()[::8, ::8], check_contrast=False)
    caplog.clear()
    assert infer([new], out, "--n-segments", "40") == 2
    assert "n_segments 30 -> 40 (config.json)" in caplog.text
    assert infer(images[:2], out, "--n-segments", "40", "--overwrite") == 0
    for image in images[:2]:
        record = json.loads((out / f"{image.stem}.ssn.json").read_text())
        assert record["settings"]["n_segments"] == 40
        np.testing.assert_array_equal(np.load(out / f"{image.stem}.npy"),
                                      expected_labels(image, 40))
    # The third image still holds n=30 results: the summary says so.
    assert summary(out)[images[2].stem]["status"].startswith("stale: settings differ")
    assert summary(out)[images[0].stem]["status"] == "ok"


# --------------------------------------------------------------------------------------------
# Existing outputs are verified, not trusted


def truncate(path):
    path.write_bytes(path.read_bytes()[:100])


def empty(path):
    path.write_bytes(b"")


def wrong_shape(path):
    np.save(path, np.zeros((5, 7), np.int32))


def wrong_dtype(path):
    np.save(path, np.load(path).astype(np.int64))


def gaps(path):
    np.save(path, np.load(path) * 2)


def no_record(path):
    path.with_name(path.stem + ".ssn.json").unlink()


def png_gone(path):
    path.with_name(path.stem + "_overlay.png").unlink()


@pytest.mark.parametrize("damage", [truncate, empty, wrong_shape, wrong_dtype, gaps,
                                    no_record, png_gone])
def test_a_damaged_output_is_recomputed(tmp_path, images, damage, caplog):
    out = tmp_path / "out"
    assert infer(images, out) == 0
    npy = out / f"{images[1].stem}.npy"
    good = npy.read_bytes()
    kept = (out / f"{images[0].stem}.npy").stat().st_mtime_ns
    damage(npy)
    caplog.set_level(logging.INFO)
    assert infer(images, out) == 0
    assert npy.read_bytes() == good
    assert "1 image(s) computed" in caplog.text and "2 verified" in caplog.text
    assert (out / f"{images[0].stem}.npy").stat().st_mtime_ns == kept
    assert (out / f"{images[1].stem}_overlay.png").exists()


def test_verify_checks_the_labels_even_when_the_record_matches(tmp_path, images):
    """A record forged (or written by a bug) for a bad .npy: the load check catches it."""
    out = tmp_path / "out"
    assert infer(images[:1], out) == 0
    item = Item(str(images[0]), images[0].stem)
    settings = json.loads((out / "config.json").read_text())["settings"]
    assert verify(item, out, settings)[0] is not None
    npy = out / f"{item.name}.npy"
    np.save(npy, np.load(npy)[:, :-1])
    record_file = out / f"{item.name}.ssn.json"
    record = json.loads(record_file.read_text())
    record["files"]["npy"].update(size=npy.stat().st_size, sha256=sha256_of(npy))
    record_file.write_text(json.dumps(record))
    assert verify(item, out, settings) == (None, f"{item.name}.npy: shape "
                                                 f"{np.load(npy).shape}, not the image's "
                                                 f"{(record['height'], record['width'])}")


def test_a_changed_image_is_recomputed(tmp_path):
    image = tmp_path / "photo.png"
    skio.imsave(image, data.astronaut()[::8, ::8], check_contrast=False)
    out = tmp_path / "out"
    assert infer([image], out) == 0
    skio.imsave(image, data.coffee()[::8, ::8], check_contrast=False)
    os.utime(image, ns=(1, 1))
    assert infer([image], out) == 0
    np.testing.assert_array_equal(np.load(out / "photo.npy"), expected_labels(image))


def test_an_image_that_turned_bad_loses_its_old_labels(tmp_path):
    image = tmp_path / "photo.png"
    skio.imsave(image, data.astronaut()[::8, ::8], check_contrast=False)
    out = tmp_path / "out"
    assert infer([image], out) == 0
    image.write_bytes(b"\x89PNG garbage")
    assert infer([image], out) == 1
    assert visible_files(out) == {"photo.ssn.json", "config.json", "summary.csv",
                                  "summary.json"}
    assert summary(out)["photo"]["status"].startswith("failed: cannot read image")


# --------------------------------------------------------------------------------------------
# Names, concurrent runs and the summary


def test_inputs_with_one_stem_all_get_outputs(tmp_path):
    pictures = {"a/img.jpg": data.astronaut(), "b/img.jpg": data.coffee(),
                "b/img.png": data.chelsea(), "c/other.png": data.camera()}
    for name, picture in pictures.items():
        (tmp_path / name).parent.mkdir(exist_ok=True)
        skio.imsave(tmp_path / name, picture[::8, ::8], check_contrast=False)
    out = tmp_path / "out"
    assert infer([tmp_path / "a", tmp_path / "b", tmp_path / "c"], out) == 0
    names = {"a/img.jpg": "a/img.jpg", "b/img.jpg": "b/img.jpg", "b/img.png": "b/img.png",
             "c/other.png": "other"}  # a/img and b/img are not enough: b has two
    for source, name in names.items():
        np.testing.assert_array_equal(np.load(out / f"{name}.npy"),
                                      expected_labels(tmp_path / source))
    assert {row["image"] for row in summary(out).values()} == {
        str(tmp_path / source) for source in names}
    assert assign_names([Path("/x/a/img.jpg"), Path("/x/b/img.jpg")]) == [
        Item("/x/a/img.jpg", "a/img"), Item("/x/b/img.jpg", "b/img")]


def test_inputs_and_out_may_be_one_folder(tmp_path, images):
    for image in images:
        (tmp_path / image.name).write_bytes(image.read_bytes())
    assert infer([tmp_path], tmp_path) == 0
    assert infer([tmp_path], tmp_path) == 0  # its pictures are not taken for inputs
    assert not list(tmp_path.glob("*_labels_labels.png"))
    assert sorted(summary(tmp_path)) == sorted(image.stem for image in images)


def test_a_name_holding_another_images_results_is_refused(tmp_path):
    for folder, picture in (("a", data.astronaut()), ("b", data.coffee())):
        (tmp_path / folder).mkdir()
        skio.imsave(tmp_path / folder / "img.png", picture[::8, ::8], check_contrast=False)
    out = tmp_path / "out"
    assert infer([tmp_path / "a" / "img.png"], out) == 0
    assert infer([tmp_path / "b" / "img.png"], out) == 2
    np.testing.assert_array_equal(np.load(out / "img.npy"),
                                  expected_labels(tmp_path / "a" / "img.png"))


def test_the_summary_is_rebuilt_from_the_records_on_disk(tmp_path, images):
    out = tmp_path / "out"
    assert infer(images[:2], out) == 0
    (out / "summary.csv").unlink()
    (out / "summary.json").unlink()
    assert infer(images[2:], out) == 0
    assert set(summary(out)) == {image.stem for image in images}
    assert (out / "summary.csv").read_text().count("\n") == 1 + len(images)


@pytest.mark.slow
def test_two_runs_into_one_out_both_finish_correctly(tmp_path, val_images, repo_root):
    """Two processes at once on overlapping images: both finish, every file verifies,
    and the summary lists every image once."""
    images = []
    for index in range(8):
        path = tmp_path / "images" / f"im{index}.png"
        path.parent.mkdir(exist_ok=True)
        picture = np.roll(data.astronaut()[::4, ::4], 17 * index, axis=1)
        skio.imsave(path, picture, check_contrast=False)
        images.append(path)
    out = tmp_path / "out"
    command = [sys.executable, str(repo_root / "tools" / "infer.py"), "--out", str(out),
               *SETTINGS]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    runs = [subprocess.Popen(command + [str(p) for p in part], env=env,
                             stderr=subprocess.PIPE, text=True)
            for part in (images[:6], images[2:][::-1])]
    for run in runs:
        _, errors = run.communicate(timeout=300)
        assert run.returncode == 0, errors
    settings = json.loads((out / "config.json").read_text())["settings"]
    for image in images:
        assert verify(Item(str(image), image.stem), out, settings)[0] is not None
    rows = summary(out)
    assert sorted(rows) == sorted(image.stem for image in images)
    assert all(row["status"] == "ok" for row in rows.values())
    assert not hidden_files(out)


# --------------------------------------------------------------------------------------------
# A bad --out, a full disk, a foreign folder: one message, exit 2, nothing half-written


def test_an_out_that_is_a_file(tmp_path, images, caplog):
    out = tmp_path / "taken"
    out.write_text("mine")
    assert infer(images, out) == 2
    assert "is a file, not a folder" in caplog.text
    assert out.read_text() == "mine"
    assert infer(images, out / "below") == 2
    assert "cannot write to --out" in caplog.text


@pytest.mark.skipif(not Path("/sys").is_dir(), reason="needs Linux's /sys")
def test_an_out_that_cannot_be_created(images, caplog):
    assert infer(images, "/sys/ssn-infer-test") == 2
    assert "cannot write to --out /sys/ssn-infer-test" in caplog.text


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere")
def test_an_out_that_cannot_be_written(tmp_path, images, caplog):
    out = tmp_path / "locked"
    out.mkdir()
    out.chmod(0o500)
    try:
        assert infer(images, out) == 2
    finally:
        out.chmod(0o700)
    assert "cannot write to --out" in caplog.text and not list(out.iterdir())


@pytest.mark.parametrize("name, content", [
    ("summary.csv", "id,score\n1,0.5\n"),
    ("summary.json", '{"accuracy": 0.9}'),
    ("config.json", '{"lr": 0.001}'),
    ("summary.csv", b"\xff\xfe\x00binary"),
])
def test_a_foreign_summary_or_config_is_left_alone(tmp_path, images, caplog, name, content):
    out = tmp_path / "results"
    out.mkdir()
    path = out / name
    path.write_bytes(content.encode() if isinstance(content, str) else content)
    before = path.read_bytes()
    assert infer(images, out) == 2
    assert f"{path} was not written by ssn-infer" in caplog.text
    assert path.read_bytes() == before and visible_files(out) == {name}


def test_a_full_disk_stops_the_run_cleanly(tmp_path, images, monkeypatch, caplog):
    out = tmp_path / "out"
    real_save = np.save
    calls = []

    def save_until_the_disk_is_full(file, array, *args, **kwargs):
        calls.append(file)
        if len(calls) == 2:  # the second image: half a file, then no space
            Path(file).write_bytes(b"\x93NUMPY half")
            raise OSError(errno.ENOSPC, "No space left on device", str(file))
        return real_save(file, array, *args, **kwargs)

    monkeypatch.setattr(np, "save", save_until_the_disk_is_full)
    assert infer(images, out) == 2
    assert "no space left on the device" in caplog.text
    assert caplog.text.count("no space left") == 1  # one message, not one per image
    first, second = images[0].stem, images[1].stem
    assert visible_files(out) == {f"{first}.npy", f"{first}_labels.png",
                                  f"{first}_overlay.png", f"{first}.ssn.json",
                                  "config.json", "summary.csv", "summary.json"}
    assert not hidden_files(out)  # no temporary file left
    assert list(summary(out)) == [first]
    monkeypatch.setattr(np, "save", real_save)
    assert infer(images, out) == 0  # the rerun completes the rest
    assert sorted(summary(out)) == sorted(image.stem for image in images)
    np.testing.assert_array_equal(np.load(out / f"{second}.npy"), expected_labels(images[1]))


def test_a_full_disk_while_writing_the_summary(tmp_path, images, monkeypatch, caplog):
    out = tmp_path / "out"
    assert infer(images[:1], out) == 0
    old = (out / "summary.csv").read_bytes()
    real_writer = outputs.csv.DictWriter

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(outputs.csv, "DictWriter", full)
    assert infer(images, out) == 2
    assert "no space left on the device" in caplog.text
    assert (out / "summary.csv").read_bytes() == old and not hidden_files(out)
    monkeypatch.setattr(outputs.csv, "DictWriter", real_writer)


# --------------------------------------------------------------------------------------------
# Devices and bad images


@pytest.mark.parametrize("engine", [[], ["--workers", "2"], ["--dask", "--workers", "2"]],
                         ids=["here", "workers", "dask"])
def test_a_gpu_on_a_cpu_only_build_on_every_path(tmp_path, images, monkeypatch, caplog, engine):
    from ssn import device
    monkeypatch.setattr(device, "caffe_has_gpu", lambda: False)
    out = tmp_path / "out"
    assert infer_main([str(p) for p in images] + ["--out", str(out), "--gpu", "0",
                                                  *engine]) == 2
    assert "built CPU-only" in caplog.text
    assert not out.exists() or not list(out.glob("*.npy"))


def test_corrupt_images_say_cannot_read_image(tmp_path, images):
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "corrupt.jpg").write_bytes(b"not a jpeg at all")
    (bad / "page.png").write_bytes(b"<!DOCTYPE html><html>404</html>")
    (bad / "empty.jpg").write_bytes(b"")
    jpeg = images[0].read_bytes()
    (bad / "cut.jpg").write_bytes(jpeg[:len(jpeg) // 3])
    out = tmp_path / "out"
    assert infer([images[0], bad], out) == 1
    rows = summary(out)
    assert rows[images[0].stem]["status"] == "ok"
    for name in ("corrupt", "page", "empty", "cut"):
        status = rows[name]["status"]
        assert status.startswith("failed: cannot read image: "), status
        assert "backend" not in status and "pip install" not in status
    assert "the file is empty" in rows["empty"]["status"]
    assert "b'<!DOCTYPE html>" in rows["page"]["status"]
    assert "truncated" in rows["cut"]["status"].lower()


def test_a_failing_image_does_not_stop_the_others(tmp_path, images, monkeypatch):
    """Any exception from one image (here a MemoryError) is that image's failure."""
    real = task.superpixels

    def flaky(rgb, *args, **kwargs):
        if rgb.shape[0] == 72:  # 9011.jpg
            raise MemoryError("out of memory")
        return real(rgb, *args, **kwargs)

    monkeypatch.setattr(task, "superpixels", flaky)
    out = tmp_path / "out"
    assert infer(images, out) == 1
    rows = summary(out)
    assert rows["9011"]["status"] == "failed: MemoryError: out of memory"
    assert sum(row["status"] == "ok" for row in rows.values()) == 2


# --------------------------------------------------------------------------------------------
# A run killed anywhere, then run again, ends as an uninterrupted run


KILL_TEST_IMAGES = 10


def kill_test_pictures(folder: Path) -> list[Path]:
    """Ten 256 x 384 crops of one photo: work enough (deep features) to be killed in."""
    folder.mkdir()
    photo = data.astronaut()
    paths = []
    for index in range(KILL_TEST_IMAGES):
        top, left = 24 * index, 12 * index
        path = folder / f"crop{index}.png"
        skio.imsave(path, photo[top:top + 256, left:left + 384], check_contrast=False)
        paths.append(path)
    return paths


VOLATILE_RECORD_FIELDS = ("seconds", "threads", "host")


def output_contents(out: Path) -> dict:
    """Every output file's bytes, and each record less its timing; not the run-level files."""
    contents = {}
    for name in visible_files(out):
        if name.startswith(("summary.", "config.json")):
            continue
        if name.endswith(".ssn.json"):
            record = json.loads((out / name).read_text())
            contents[name] = {key: value for key, value in record.items()
                              if key not in VOLATILE_RECORD_FIELDS}
        else:
            contents[name] = (out / name).read_bytes()
    return contents


def run_tool(pictures: Path, out: Path, kill_after: float = None) -> int:
    command = [sys.executable, "-m", "ssn.cli.infer", str(pictures), "--out", str(out),
               "--n-segments", "60", "--num-steps", "5", "--features", "deep",
               "--workers", "1", "--threads", "1"]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if kill_after is None:
        return process.wait(timeout=300)
    try:
        return process.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return -9


@pytest.mark.slow
def test_a_run_killed_at_random_points_then_rerun_equals_an_uninterrupted_run(tmp_path):
    pictures = tmp_path / "pictures"
    kill_test_pictures(pictures)
    reference = tmp_path / "reference"
    start = time.monotonic()
    assert run_tool(pictures, reference) == 0
    duration = time.monotonic() - start
    expected = output_contents(reference)
    assert len([name for name in expected if name.endswith(".npy")]) == KILL_TEST_IMAGES
    rng = np.random.default_rng(11)
    killed = 0
    # Points inside the run, as a share of its length (start-up included), so that
    # a faster build still gets killed mid-run.
    for attempt, delay in enumerate(rng.uniform(0.3, 0.8, size=3) * duration):
        out = tmp_path / f"killed{attempt}"
        code = run_tool(pictures, out, kill_after=float(delay))
        killed += code == -9
        assert run_tool(pictures, out) == 0, f"rerun after a kill at {delay:.2f} s"
        assert output_contents(out) == expected, (attempt, delay, code)
        rows = summary(out)
        assert len(rows) == KILL_TEST_IMAGES
        assert all(row["status"] == "ok" for row in rows.values())
    assert killed >= 2, "the runs finished before they could be killed: give them more work"


def test_a_position_weight_is_recorded_and_used(tmp_path, images):
    out = tmp_path / "out"
    assert infer(images[:1], out, "--position-weight", "2.5") == 0
    record = json.loads((out / f"{images[0].stem}.ssn.json").read_text())
    assert record["settings"]["position_weight"] == 2.5
    np.testing.assert_array_equal(
        np.load(out / f"{images[0].stem}.npy"),
        superpixels(read_image(images[0]), 30, num_steps=3, features="pixel", position_weight=2.5))
    assert infer(images[:1], tmp_path / "bad", "--position-weight", "0") == 2


# --------------------------------------------------------------------------------------------
# One bad input never stops a run: it is reported with its reason, in the
# summary too, and the rest is done


def picture(path: Path, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    skio.imsave(path, rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), check_contrast=False)
    return path


def summary_statuses(out: Path) -> dict[str, str]:
    return {row["image"]: row["status"] for row in json.loads((out / "summary.json").read_text())}


def test_a_symlink_loop_among_the_inputs_is_reported_and_the_rest_done(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    picture(folder / "good.png")
    (folder / "loop.png").symlink_to(folder / "loop.png")
    (folder / "ring_a.png").symlink_to(folder / "ring_b.png")
    (folder / "ring_b.png").symlink_to(folder / "ring_a.png")
    out = tmp_path / "out"
    assert infer([folder], out) == 1
    statuses = summary_statuses(out)
    assert statuses[str(folder / "good.png")] == "ok"
    for name in ["loop.png", "ring_a.png", "ring_b.png"]:
        assert "symbolic links" in statuses[str(folder / name)], statuses


def test_an_unreadable_input_folder_is_reported_and_the_rest_done(tmp_path, monkeypatch):
    good, locked = tmp_path / "good", tmp_path / "locked"
    good.mkdir()
    locked.mkdir()
    picture(good / "a.png")
    picture(locked / "b.png")
    real_iterdir = Path.iterdir

    def iterdir(self):  # as chmod 000 would (root may read anything)
        if self == locked:
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_iterdir(self)

    monkeypatch.setattr(Path, "iterdir", iterdir)
    out = tmp_path / "out"
    assert infer([locked, good], out) == 1
    statuses = summary_statuses(out)
    assert statuses[str(good / "a.png")] == "ok"
    assert "Permission denied" in statuses[str(locked)], statuses


def test_a_name_that_is_not_utf8_is_done_and_the_summary_written(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    picture(folder / "good.png")
    odd = os.path.join(folder, os.fsdecode(b"caf\xe9.png"))
    picture(Path(odd), seed=1)
    out = tmp_path / "out"
    for _ in range(2):  # the rerun reads the record back and writes the summary again
        assert infer([folder], out) == 0
        text = (out / "summary.csv").read_text(encoding="utf-8")
        assert "caf\\xe9.png" in text and "good.png" in text
        assert summary_statuses(out)[odd] == "ok"


def test_a_name_too_long_for_the_file_system_is_reported_and_the_rest_done(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    picture(folder / "good.png")
    long_ok = picture(folder / ("a" * 240 + ".png"))  # its outputs fit in 255 bytes
    too_long = picture(folder / ("b" * 250 + ".png"))  # <stem>_overlay.png does not
    out = tmp_path / "out"
    assert infer([folder], out) == 1
    statuses = summary_statuses(out)
    assert statuses[str(folder / "good.png")] == "ok"
    assert statuses[str(long_ok)] == "ok"
    assert "name too long" in statuses[str(too_long)].lower(), statuses
    assert infer([folder], out) == 1  # and again: nothing stops a rerun
    assert not [path for path in out.rglob(".*") if ".tmp" in path.name]


# --------------------------------------------------------------------------------------------
# Our outputs are known by their records, not by their names


def test_inputs_named_like_outputs_are_processed(tmp_path):
    folder = tmp_path / "both"  # inputs and --out in one folder
    folder.mkdir()
    for index, name in enumerate(["sky_overlay.png", "sea_labels.png", "x.png"]):
        picture(folder / name, seed=index)
    assert infer([folder], folder) == 0
    done = {path.name for path in folder.glob("*.ssn.json")}
    assert done == {"sky_overlay.ssn.json", "sea_labels.ssn.json", "x.ssn.json"}
    first = {name: (folder / name).read_bytes() for name in done}
    # A rerun takes our outputs (x_overlay.png, ...) for ours, and keeps everything.
    assert infer([folder], folder) == 0
    assert {path.name for path in folder.glob("*.ssn.json")} == done
    assert {name: (folder / name).read_bytes() for name in done} == first
    assert len(summary(folder)) == 3


def test_an_output_that_would_replace_an_input_is_reported(tmp_path):
    folder = tmp_path / "both"
    folder.mkdir()
    picture(folder / "x.png")
    picture(folder / "x_overlay.png", seed=1)  # x's overlay would land on it
    original = (folder / "x_overlay.png").read_bytes()
    assert infer([folder], folder) == 1
    assert (folder / "x_overlay.png").read_bytes() == original
    statuses = {row["image"]: row["status"] for row in json.loads(
        (folder / "summary.json").read_text())}
    assert statuses[str(folder / "x_overlay.png")] == "ok"
    assert "would replace the input" in statuses[str(folder / "x.png")]


def test_files_of_a_run_killed_before_its_record_are_not_inputs(tmp_path):
    folder = tmp_path / "both"
    folder.mkdir()
    picture(folder / "x.png")
    assert infer([folder], folder) == 0
    record = json.loads((folder / "x.ssn.json").read_text())
    # As a kill after the files' renames, before the final record, leaves it:
    pending = dict(record, status="incomplete",
                   files={key: dict(name=spec["name"]) for key, spec in record["files"].items()})
    (folder / "x.ssn.json").write_text(json.dumps(pending))
    assert is_output(folder / "x_overlay.png", folder)
    assert not is_output(folder / "x.png", folder)
    assert infer([folder], folder) == 0
    assert {path.name for path in folder.glob("*.ssn.json")} == {"x.ssn.json"}


# --------------------------------------------------------------------------------------------
# Content hashes, big-endian images, a killed run's temporary files,
# absurd position weights


def test_an_image_rewritten_with_the_same_size_and_time_is_recomputed(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    image = folder / "x.ppm"  # uncompressed: another picture of one size has one file size
    rng = np.random.default_rng(11)
    skio.imsave(image, rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), check_contrast=False)
    out = tmp_path / "out"
    assert infer([image], out) == 0
    before = os.stat(image)
    skio.imsave(image, rng.integers(0, 256, (40, 56, 3), dtype=np.uint8), check_contrast=False)
    os.utime(image, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert os.stat(image).st_size == before.st_size
    assert infer([image], out) == 0
    np.testing.assert_array_equal(np.load(out / "x.npy"), expected_labels(image))


def test_a_big_endian_16_bit_tiff_reads_as_its_values(tmp_path):
    tifffile = pytest.importorskip("tifffile")
    rng = np.random.default_rng(12)
    values = rng.integers(0, 65536, (20, 24, 3)).astype(np.uint16)
    tifffile.imwrite(tmp_path / "big.tif", values, byteorder=">")
    tifffile.imwrite(tmp_path / "little.tif", values, byteorder="<")
    np.testing.assert_array_equal(read_image(tmp_path / "big.tif"),
                                  values.astype(np.float32) / 65535)
    np.testing.assert_array_equal(read_image(tmp_path / "little.tif"),
                                  read_image(tmp_path / "big.tif"))


def test_as_rgb_takes_big_endian_arrays_by_value():
    from ssn.images import as_rgb
    values = np.arange(0, 60000, 1000, dtype=np.uint16).reshape(6, 10)
    np.testing.assert_array_equal(as_rgb(values.astype(">u2")), as_rgb(values))


def test_a_killed_runs_temporary_files_are_removed_by_the_rerun(tmp_path, images):
    out = tmp_path / "out"
    assert infer(images, out) == 0
    old = time.time() - 3600
    left = [out / ".9001_overlay.k3j_x9q2.tmp.png", out / ".9001.ab12cd34.tmp.npy",
            out / ".summary.zz99yy88.tmp.csv"]
    young = out / ".9001.qq11ww22.tmp.npy"  # another run may be writing it now
    foreign = [out / ".notes.tmp", out / "mine.tmp.png", out / ".x.short.tmp.png"]
    for path in [*left, young, *foreign]:
        path.write_bytes(b"partial")
    for path in [*left, *foreign]:
        os.utime(path, (old, old))
    assert infer(images, out) == 0
    assert not any(path.exists() for path in left)
    assert young.exists() and all(path.exists() for path in foreign)


@pytest.mark.parametrize("weight", ["1e20", "1e-9", "nan", "inf", "-1"])
def test_an_absurd_position_weight_is_refused_before_any_work(tmp_path, images, capsys,
                                                              weight):
    out = tmp_path / "out"
    assert infer(images, out, "--position-weight", weight) == 2
    assert not out.exists()
    error = capsys.readouterr().err
    assert "position-weight" in error and "[0.0001, 10000]" in error


@pytest.mark.parametrize("weight", [1e20, 1e-9, float("nan"), float("inf"), 0.0])
def test_superpixels_refuses_an_absurd_position_weight(weight):
    with pytest.raises(ValueError, match=r"\[0.0001, 10000\]"):
        superpixels(np.zeros((20, 20, 3)), 4, num_steps=2, features="pixel", position_weight=weight)
