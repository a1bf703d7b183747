"""Atomic file writes (write under a temporary name beside the target, then rename),
and a file's sha256.

A reader never sees a half-written file, and a failure (an exception, a full
disk) leaves the target as it was. Temporary names are unique per process and
call, so two writers of one target cannot clobber each other's partial files.
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path
from typing import Iterator, Union

PathLike = Union[str, "os.PathLike[str]"]
# Temporary names are ".<stem, at most this many bytes>.<8 random characters>.tmp<suffix>".
TEMP_STEM_BYTES = 64


@contextlib.contextmanager
def atomic_path(target: PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; rename it onto ``target`` on success.

    The temporary name keeps ``target``'s suffix, so writers that pick a format
    from the suffix (``np.save``, ``skimage.io.imsave``) still work. On an
    exception the temporary file is removed and ``target`` is untouched.

    Examples
    --------
    >>> with atomic_path(out / "labels.npy") as tmp:   # doctest: +SKIP
    ...     np.save(tmp, labels)
    """
    target = Path(target)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{_short(target.stem)}.", suffix=f".tmp{target.suffix}",
                                dir=target.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        # mkstemp makes the file private (0600); give it the target's mode, or rw-r--r--.
        try:
            mode = target.stat().st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o644
        tmp.chmod(mode)
        yield tmp
        os.replace(tmp, target)
    finally:
        tmp.unlink(missing_ok=True)


def _short(stem: str, limit: int = TEMP_STEM_BYTES) -> str:
    """The first ``limit`` bytes of ``stem`` (a temporary name must fit where the target's
    name fits: 255 bytes on most file systems)."""
    return os.fsdecode(os.fsencode(stem)[:limit])


def write_atomic(target: PathLike, content: Union[bytes, str]) -> None:
    """Write ``content`` (bytes, or text as UTF-8) to ``target`` atomically."""
    data = content.encode() if isinstance(content, str) else content
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def write_if_changed(target: PathLike, content: bytes) -> bool:
    """Write ``content`` atomically unless ``target`` already holds it.

    Keeps the modification time of unchanged files, which make relies on.

    Returns
    -------
    bool
        True if the file was written.
    """
    target = Path(target)
    if target.exists() and target.read_bytes() == content:
        return False
    write_atomic(target, content)
    return True


def ensure_writable_folder(folder: PathLike, what: str = "output folder") -> Path:
    """Create ``folder`` if needed and check that a file can be written in it.

    Tools call this before their work starts, so a bad ``--out`` costs nothing.

    Raises
    ------
    NotADirectoryError
        If ``folder`` (or a folder above it) is a file.
    OSError
        If it cannot be created or written; the message names ``what`` and the path.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"the {what} {folder} is a file, not a folder")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-test.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as error:
        kind = NotADirectoryError if isinstance(error, (NotADirectoryError, FileExistsError)) \
            else type(error)
        raise kind(f"cannot write to the {what} {folder}: {error.strerror or error}") from error
    return folder


def sha256_of(path: PathLike) -> str:
    """The sha256 of a file's bytes, as hex, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as stream:
        for block in iter(lambda: stream.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
