"""Replacing a file so that a crash leaves the old or the new content, never half of either."""

import os
import tempfile
from pathlib import Path


def write_atomic(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Write `data` to a temporary file beside `path` (with `mode`), fsync it, rename it over
    `path` and fsync the directory, so the rename itself survives a power cut."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        _fill(fd, data, mode)
        Path(temp).replace(path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
    fsync_directory(path.parent)


def write_new(path: Path, data: bytes, *, mode: int = 0o600) -> None:
    """Create `path` with exactly `mode` (whatever the umask) holding `data`, durable before
    this returns; never replaces an existing file or follows a symlink (FileExistsError)."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode)
    _fill(fd, data, mode)


def _fill(fd: int, data: bytes, mode: int) -> None:
    """Give the new file `fd` exactly `mode` (whatever the umask), write `data`, fsync, close."""
    with os.fdopen(fd, "wb") as f:
        os.fchmod(fd, mode)
        f.write(data)
        f.flush()
        os.fsync(fd)


def fsync_directory(directory: str | Path) -> None:
    """Make the names created or renamed in `directory` durable (a rename is only as durable as
    the directory holding it)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def publish_new(directory: int, name: str, data: bytes, *, mode: int = 0o600) -> None:
    """Create `name` in the directory open as descriptor `directory`, holding `data`, complete
    and durable or not at all: a temporary file beside it is written and fsynced, then
    hard-linked to `name` (a link never replaces an existing name nor follows a symlink:
    FileExistsError) and the directory fsynced. No reader ever sees a partial file."""
    temp = f".{name}.{os.urandom(8).hex()}.tmp"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    fd = os.open(temp, flags, mode, dir_fd=directory)
    try:
        _fill(fd, data, mode)
        os.link(temp, name, src_dir_fd=directory, dst_dir_fd=directory)
    finally:
        os.unlink(temp, dir_fd=directory)
    os.fsync(directory)
