"""Fetch BSDS500: download the official archive, verify it, unpack it into the tools' layout.

The archive (``BSR_bsds500.tgz``) holds ``BSR/BSDS500/data/{images,groundTruth}/
{train,val,test}``; what lands in the target folder is that ``data`` folder's
content, the layout :mod:`ssn.bsds` reads. The download is resumable (an
interrupted ``.part`` file is continued where the server allows it) and the
whole operation idempotent: a target that already verifies is left alone.

Verification: the train and val files (the ones this project trains and
evaluates on) must hash, file by file, to a pinned content digest (see
:func:`content_digest`); ``sha256`` additionally pins the archive itself when
given. The digest was computed from the copy of BSDS500 this project was
developed with; the archive could not be downloaded from the build machines, so
the two have not been compared byte for byte. Anything unpacked goes to a
staging folder first and is renamed into place only after it verifies: a
corrupt download leaves nothing half-unpacked.
"""
from __future__ import annotations

import hashlib
import logging
import shutil
import sys
import tarfile
import tempfile
import urllib.request
from pathlib import Path
from typing import Optional

from tqdm import tqdm

from ssn.atomic import sha256_of, write_atomic

log = logging.getLogger("ssn.download")

BSDS500_URL = ("http://www.eecs.berkeley.edu/Research/Projects/CS/vision/grouping/BSR/"
               "BSR_bsds500.tgz")
BSDS500_ARCHIVE_ROOT = "BSR/BSDS500/data/"
VERIFIED_FOLDERS = ("images/train", "images/val", "groundTruth/train", "groundTruth/val")
# content_digest() of the train and val files (600 files).
BSDS500_DIGEST = "10ec6861da3c2854ae93633baed6361a2754ba7eb0fc74bb5cd592859bd9c458"
CHUNK = 1 << 20


class FetchError(RuntimeError):
    """The download failed, or what came does not verify."""



def content_digest(root: Path, folders=VERIFIED_FOLDERS) -> str:
    """sha256 over "<folder>/<name> <sha256 of the file>" lines, folders and names sorted.

    Raises
    ------
    FetchError
        If a folder is missing or empty.
    """
    lines = []
    for folder in folders:
        files = sorted(path for path in (root / folder).glob("*") if path.is_file())
        if not files:
            raise FetchError(f"{root / folder}: missing or empty")
        lines += [f"{folder}/{path.name} {sha256_of(path)}\n" for path in files]
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def download(url: str, target: Path) -> Path:
    """Download ``url`` to ``target``, resuming ``target.part`` where the server allows."""
    partial = target.with_name(target.name + ".part")
    done = partial.stat().st_size if partial.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={done}-"} if done else {})
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            resumed = getattr(response, "status", None) == 206
            mode = "ab" if resumed else "wb"
            total = response.headers.get("Content-Length")
            with open(partial, mode) as stream, tqdm(
                    total=int(total) + (done if resumed else 0) if total else None,
                    initial=done if resumed else 0, unit="B", unit_scale=True,
                    desc=target.name, file=sys.stderr,
                    disable=not sys.stderr.isatty()) as progress:
                for block in iter(lambda: response.read(CHUNK), b""):
                    stream.write(block)
                    progress.update(len(block))
    except OSError as error:  # URLError is an OSError
        raise FetchError(f"downloading {url} failed: {error} (run again to resume)") from error
    partial.replace(target)
    return target


def unpack_data(archive: Path, staging: Path) -> None:
    """Extract the archive's BSR/BSDS500/data/ content into ``staging``."""
    try:
        with tarfile.open(archive) as tar:
            members = [member for member in tar.getmembers()
                       if member.name.startswith(BSDS500_ARCHIVE_ROOT)
                       and len(member.name) > len(BSDS500_ARCHIVE_ROOT)]
            if not members:
                raise FetchError(f"{archive}: no {BSDS500_ARCHIVE_ROOT} in the archive")
            for member in members:
                member.name = member.name[len(BSDS500_ARCHIVE_ROOT):]
            tar.extractall(staging, members=members, filter="data")
    except (tarfile.TarError, EOFError, OSError) as error:
        raise FetchError(f"{archive}: not a complete archive ({error}); delete it and "
                         "run again") from error


def fetch_bsds500(to: Path, url: str = BSDS500_URL, digest: str = BSDS500_DIGEST,
                  sha256: Optional[str] = None) -> Path:
    """Make ``to`` a verified BSDS500 folder (images/, groundTruth/); return it.

    Raises
    ------
    FetchError
        If the download fails, the archive is corrupt or does not match
        ``sha256``, the unpacked train/val files do not match ``digest``, or
        ``to`` exists with other content.
    """
    to = Path(to)
    if to.exists():
        try:
            if content_digest(to) == digest:
                log.info("%s already holds the verified data set", to)
                return to
        except FetchError:
            pass
        raise FetchError(f"{to} exists and does not hold the verified data set: move it away "
                         "or choose another --to")
    to.parent.mkdir(parents=True, exist_ok=True)
    downloads = to.parent / f".{to.name}.download"
    downloads.mkdir(exist_ok=True)
    archive = downloads / Path(urllib.request.url2pathname(url.rsplit("/", 1)[-1])).name
    if not archive.exists():
        log.info("downloading %s", url)
        download(url, archive)
    if sha256 is not None and sha256_of(archive) != sha256:
        archive.unlink()
        raise FetchError(f"{archive.name}: sha256 differs from the pinned {sha256}; the "
                         "corrupt download was removed, run again")
    staging = Path(tempfile.mkdtemp(prefix=f".{to.name}.unpacking.", dir=to.parent))
    try:
        log.info("unpacking %s", archive.name)
        unpack_data(archive, staging)
        found = content_digest(staging)
        if found != digest:
            raise FetchError(f"{archive.name}: the unpacked train/val files do not match the "
                             f"pinned digest ({found} != {digest}); the archive stays in "
                             f"{downloads}: delete it to download again")
        write_atomic(staging / "FETCHED_FROM.txt", f"{url}\n")
        staging.rename(to)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(downloads, ignore_errors=True)
    log.info("BSDS500 is in %s (point the tools at it with --data-root or $SSN_DATA_ROOT)", to)
    return to
