"""Files the course writes and checks: one digest, one atomic write, one asset folder.

    sha256_file(path)            hex SHA-256 of a file's bytes, read in 1 MiB chunks
    sha256_bytes(data)           the same for bytes already in memory
    atomic_write(path, write)    write(f) into a temporary file beside path, then rename it onto path
    atomic_write_bytes(path, b)  the same for bytes
    atomic_create(path, write)   like atomic_write, but never replaces a file that exists
    ASSET_DIR                    dlcourse/assets/: the shipped checkpoints and the judge

Why a temporary file and a rename: ``os.replace`` within one folder is atomic, so a crash,
a full disk or an interrupted download leaves either the old file or the new one, never
half of one. Why a digest: a file that changed by a single bit, by accident or on purpose,
is refused before it is used (see ``dlcourse.checkpoints``).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import BinaryIO

ASSET_DIR = Path(__file__).parent / "assets"
CHUNK = 1 << 20                                   # read files 1 MiB at a time


def sha256_bytes(data: bytes) -> str:
    """The SHA-256 digest of ``data``, as 64 lowercase hex digits."""
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 digest of a file's bytes, as 64 lowercase hex digits (``sha256sum``'s)."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _write_temporary(path: Path, write: Callable[[BinaryIO], None]) -> str:
    """Call ``write(f)`` on a new temporary file in ``path``'s folder; return its name (removed on error)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)                      # mkstemp makes it readable by its owner only
    except BaseException:
        os.remove(tmp)
        raise
    return tmp


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> Path:
    """Write a file all at once or not at all.

    ``write(f)`` fills a temporary file (opened for binary writing) in the same folder,
    which is then renamed onto ``path`` with ``os.replace``. If ``write`` raises, the
    temporary file is removed, ``path`` is left as it was, and the error propagates.
    The folder is created if needed.

    Returns:
        ``path`` as a ``Path``.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temporary(path, write)
    try:
        os.replace(tmp, path)
    except BaseException:
        os.remove(tmp)
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """:func:`atomic_write` of ``data``."""
    return atomic_write(path, lambda f: f.write(data))


def atomic_create(path: str | os.PathLike, write: Callable[[BinaryIO], None]) -> bool:
    """Like :func:`atomic_write`, but only if ``path`` does not exist; never replaces a file.

    The complete temporary file is hard-linked to ``path``, which fails if ``path``
    appeared in the meantime, so a file that is there (a learner's work) always wins.

    Returns:
        True if the file was created, False if ``path`` already existed.
    """
    path = Path(path)
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _write_temporary(path, write)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        os.remove(tmp)
