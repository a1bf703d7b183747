"""ssn-data fetch bsds500, against local file:// archives made from the committed sample."""
from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest

from ssn.bsds import load_bsds, read_split
from ssn.cli.data import main as data_main
from ssn.download import BSDS500_ARCHIVE_ROOT, FetchError, content_digest, fetch_bsds500


def make_archive(sample: Path, path: Path, truncate: bool = False) -> Path:
    """A BSR_bsds500.tgz look-alike holding ``sample``'s files under BSR/BSDS500/data/."""
    with tarfile.open(path, "w:gz") as archive:
        for file in sorted(sample.rglob("*")):
            if file.is_file():
                archive.add(file, arcname=BSDS500_ARCHIVE_ROOT + str(file.relative_to(sample)))
        readme = b"not part of the data\n"
        info = tarfile.TarInfo("BSR/README.txt")
        info.size = len(readme)
        archive.addfile(info, io.BytesIO(readme))
    if truncate:
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return path


@pytest.fixture
def archive(tmp_path, sample_root):
    return make_archive(sample_root, tmp_path / "BSR_bsds500.tgz")


def leftovers(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir() if path.name.startswith("."))


def test_fetch_unpacks_the_tools_layout_and_is_idempotent(tmp_path, archive, sample_root):
    to = tmp_path / "data" / "BSDS500"
    digest = content_digest(sample_root)
    assert data_main(["fetch", "bsds500", "--to", str(to), "--url", archive.as_uri(),
                      "--digest", digest]) == 0
    assert read_split("val", to) == read_split("val", sample_root)
    assert load_bsds(read_split("train", to)[0], "train", to).segmentations
    assert not (to / "README.txt").exists() and leftovers(to.parent) == []
    stamp = (to / "images").stat().st_mtime_ns
    archive.unlink()  # a second run must not need the archive
    assert data_main(["fetch", "bsds500", "--to", str(to), "--url", archive.as_uri(),
                      "--digest", digest]) == 0
    assert (to / "images").stat().st_mtime_ns == stamp


def test_a_truncated_download_leaves_nothing_half_unpacked(tmp_path, sample_root, caplog):
    broken = make_archive(sample_root, tmp_path / "BSR_bsds500.tgz", truncate=True)
    to = tmp_path / "BSDS500"
    assert data_main(["fetch", "bsds500", "--to", str(to), "--url", broken.as_uri(),
                      "--digest", content_digest(sample_root)]) == 2
    assert "not a complete archive" in caplog.text
    assert not to.exists()
    assert not any(path.name.startswith(".BSDS500.unpacking") for path in tmp_path.iterdir())


def test_a_digest_mismatch_is_an_error_and_nothing_lands(tmp_path, archive):
    to = tmp_path / "BSDS500"
    with pytest.raises(FetchError, match="do not match the pinned digest"):
        fetch_bsds500(to, archive.as_uri(), digest="0" * 64)
    assert not to.exists() and leftovers(tmp_path) == [".BSDS500.download"]
    with pytest.raises(FetchError, match="sha256 differs"):
        fetch_bsds500(to, archive.as_uri(), digest="0" * 64, sha256="1" * 64)
    assert not to.exists()


def test_an_interrupted_download_resumes_from_its_part_file(tmp_path, archive, sample_root):
    to = tmp_path / "BSDS500"
    downloads = tmp_path / ".BSDS500.download"
    downloads.mkdir()
    data = archive.read_bytes()
    (downloads / "BSR_bsds500.tgz.part").write_bytes(data[:100])  # file:// restarts whole
    fetch_bsds500(to, archive.as_uri(), digest=content_digest(sample_root))
    assert read_split("train", to) == read_split("train", sample_root)


def test_an_existing_folder_with_other_content_is_left_alone(tmp_path, archive, sample_root):
    to = tmp_path / "BSDS500"
    to.mkdir()
    (to / "mine.txt").write_text("keep me")
    with pytest.raises(FetchError, match="does not hold the verified data set"):
        fetch_bsds500(to, archive.as_uri(), digest=content_digest(sample_root))
    assert (to / "mine.txt").read_text() == "keep me"


def test_an_unreachable_url_says_to_run_again(tmp_path):
    with pytest.raises(FetchError, match="run again to resume"):
        fetch_bsds500(tmp_path / "BSDS500", (tmp_path / "nowhere.tgz").as_uri())
