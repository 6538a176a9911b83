"""Crash-safe replacement of files in a store: encrypt, decrypt and rewrap in place.

Each operation writes the new version to an `O_EXCL` 0600 temporary file in the same directory,
fsyncs it, gives it the right owner, mode and mtime, and renames it over the original; the
directory is fsynced last. A crash therefore leaves the original or the complete new file,
plus at worst a locked-then-abandoned temporary file that `recover` removes. Every path is
opened relative to its directory's descriptor with O_NOFOLLOW, and that directory must lie
inside the store root: symlinks, FIFOs, devices and hard-linked files are refused.
"""

import fcntl
import io
import os
import re
import stat
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from imgvault.errors import ImgvaultError
from imgvault.filecrypt import format as fmt
from imgvault.filecrypt import stream
from imgvault.filecrypt.batch import Batches
from imgvault.filecrypt.errors import FilecryptError, NotEncryptedError, UnsafeFileError
from imgvault.filecrypt.recipients import Recipient
from imgvault.filecrypt.stream import Key
from imgvault.system.atomic import fsync_directory

TEMP_PREFIX = ".imgvault-tmp."
TEMP_NAME = re.compile(r"\.imgvault-tmp\.[0-9a-f]{16}")


@dataclass(frozen=True)
class Outcome:
    path: Path
    action: str  # encrypted, already-encrypted, decrypted, not-encrypted, rewrapped
    size_before: int
    size_after: int

    def to_json(self) -> dict[str, object]:
        return {
            "path": str(self.path),
            "action": self.action,
            "size_before": self.size_before,
            "size_after": self.size_after,
        }


def _inside(directory: int, root: Path | None, shown: Path) -> None:
    if root is None:
        return
    real = str(Path(f"/proc/self/fd/{directory}").readlink())
    root_real = os.path.realpath(root)
    if os.path.commonpath([real, root_real]) != root_real:
        raise UnsafeFileError(
            f"{shown}: outside the store root {root}",
            "give paths inside the store, or the right --root",
        )


@contextmanager
def _directory(path: Path, root: Path | None) -> Iterator[int]:
    """A descriptor of the directory holding `path`, checked to lie inside `root`."""
    try:
        fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as error:
        raise FilecryptError(
            f"{path}: cannot open its directory: {error.strerror}", "check the path"
        ) from None
    try:
        _inside(fd, root, path)
        yield fd
    finally:
        os.close(fd)


def _open_regular(directory: int, path: Path) -> tuple[io.BufferedReader, os.stat_result]:
    """Open a regular, singly linked file for reading, never following a symlink."""
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path.name, flags, dir_fd=directory)
    except OSError as error:
        if error.errno == 40:  # ELOOP: the name is a symlink
            raise UnsafeFileError(
                f"{path}: is a symbolic link; refusing to follow it",
                "encrypt the file it points to, inside the store, by its own path",
            ) from None
        raise FilecryptError(f"{path}: cannot open: {error.strerror}", "check the path") from None
    st = os.fstat(fd)
    problem = None
    if not stat.S_ISREG(st.st_mode):
        problem = "not a regular file (FIFO, device, socket or directory)"
    elif st.st_nlink > 1:
        problem = f"has {st.st_nlink} hard links; the other names would keep the old content"
    if problem:
        os.close(fd)
        raise UnsafeFileError(
            f"{path}: {problem}; refusing it",
            "store images as regular files with a single link (cp the file to break links)",
        )
    return open(fd, "rb"), st  # noqa: PTH123  # a descriptor, not a path


@contextmanager
def _temporary(directory: int, path: Path) -> Iterator[tuple[BinaryIO, str]]:
    """A new locked 0600 file next to `path`; removed unless the caller renamed it away."""
    name = TEMP_PREFIX + os.urandom(8).hex()
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(name, flags, 0o600, dir_fd=directory)
    except OSError as error:
        raise FilecryptError(
            f"{path}: cannot create a temporary file beside it: {error.strerror}",
            "the directory must be writable and have free space for one more copy",
        ) from None
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        with open(fd, "wb", buffering=1 << 16) as out:  # noqa: PTH123  # a descriptor
            yield out, name
    finally:
        with suppress(FileNotFoundError):
            os.unlink(name, dir_fd=directory)


@dataclass(frozen=True)
class _Attributes:
    mode: int
    uid: int
    gid: int
    atime_ns: int
    mtime_ns: int


def _finish(out: BinaryIO, attrs: _Attributes, path: Path) -> None:
    out.flush()
    fd = out.fileno()
    st = os.fstat(fd)
    if (st.st_uid, st.st_gid) != (attrs.uid, attrs.gid):
        try:
            os.fchown(fd, attrs.uid, attrs.gid)
        except PermissionError:
            raise FilecryptError(
                f"{path}: cannot give the new file owner {attrs.uid}:{attrs.gid}",
                "run as root (or as the file's owner) so ownership is kept",
            ) from None
    os.fchmod(fd, attrs.mode)  # after chown, which clears set-id bits
    os.utime(fd, ns=(attrs.atime_ns, attrs.mtime_ns))
    os.fsync(fd)


@contextmanager
def _io_errors(path: Path) -> Iterator[None]:
    """ENOSPC, EIO, EROFS...: the original is untouched; say so instead of a traceback."""
    try:
        yield
    except OSError as error:
        raise FilecryptError(
            f"{path}: {error.strerror or error}; the file was left as it was",
            "check free space and the health of the file system, then run again",
        ) from None


def _replace(
    path: Path,
    root: Path | None,
    produce: Callable[[io.BufferedReader, os.stat_result, BinaryIO], _Attributes | None],
    action: str,
    dirs_to_sync: set[str] | None,
) -> Outcome:
    """Run `produce(original, stat, temporary)` and rename the result over `path`.

    `produce` returns the new file's attributes, or None to leave the file as it is.
    With `dirs_to_sync`, the directory fsync is left to the caller (one per directory).
    """
    with _io_errors(path), _directory(path, root) as directory:
        src, st = _open_regular(directory, path)
        with src, _temporary(directory, path) as (out, temp):
            attrs = produce(src, st, out)
            if attrs is None:
                return Outcome(path, "already-encrypted", st.st_size, st.st_size)
            _finish(out, attrs, path)
            now = os.stat(path.name, dir_fd=directory, follow_symlinks=False)
            if (now.st_ino, now.st_size, now.st_mtime_ns) != (
                st.st_ino,
                st.st_size,
                st.st_mtime_ns,
            ):
                raise stream.FileChangedError(
                    f"{path}: changed while it was processed; left as it is now",
                    "run the command again once nothing writes to the file",
                )
            size_after = os.fstat(out.fileno()).st_size
            os.rename(temp, path.name, src_dir_fd=directory, dst_dir_fd=directory)
        if dirs_to_sync is None:
            os.fsync(directory)
        else:
            dirs_to_sync.add(str(path.parent))
    return Outcome(path, action, st.st_size, size_after)


def run_batch(
    paths: Sequence[Path],
    operation: Callable[[Path, set[str]], Outcome],
    *,
    jobs: int,
) -> Iterator[tuple[Path, Outcome | None, ImgvaultError | None]]:
    """Run `operation` on every path with `jobs` threads; yield each result as it completes.

    Threads overlap one file's fsync with the next file's reading and encryption (fsync and
    file I/O release the GIL). Each file is still fsynced before its rename; the directories
    are fsynced once at the end, before this generator finishes.
    """
    dirs: set[str] = set()

    def one(path: Path) -> tuple[Path, Outcome | None, ImgvaultError | None]:
        try:
            return path, operation(path, dirs), None
        except ImgvaultError as error:
            return path, None, error

    try:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            pending = [pool.submit(one, p) for p in paths]
            for future in as_completed(pending):
                yield future.result()
    finally:
        sync_directories(dirs)


def sync_directories(directories: set[str]) -> None:
    for directory in sorted(directories):
        fsync_directory(directory)


def is_encrypted(src: io.BufferedIOBase, size: int, name: str) -> bool:
    """True for an encrypted file, False for plaintext; raises for a damaged encrypted one."""
    try:
        fmt.parse(src, size, name)
    except NotEncryptedError:
        return False
    return True


def encrypt_file(
    path: Path,
    recipients: Sequence[Recipient],
    *,
    batches: Batches | None = None,
    root: Path | None = None,
    dirs_to_sync: set[str] | None = None,
) -> Outcome:
    """Encrypt `path` in place; an already encrypted file is left untouched. Give `batches`
    (one per run) so that decryption needs one RSA operation per batch, not per file."""

    def produce(src: io.BufferedReader, st: os.stat_result, out: BinaryIO) -> _Attributes | None:
        if is_encrypted(src, st.st_size, str(path)):
            return None
        src.seek(0)
        mode = stat.S_IMODE(st.st_mode)
        info = fmt.FileInfo(st.st_size, mode, st.st_uid, st.st_gid, st.st_mtime_ns)
        stream.encrypt(src, out, info, recipients, batches)
        return _Attributes(mode, st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns)

    return _replace(path, root, produce, "encrypted", dirs_to_sync)


def decrypt_file(
    path: Path, key: Key, *, root: Path | None = None, dirs_to_sync: set[str] | None = None
) -> Outcome:
    """Restore `path` in place to its plaintext, mode, owner and mtime."""

    def produce(src: io.BufferedReader, st: os.stat_result, out: BinaryIO) -> _Attributes:
        _, info = stream.decrypt(src, st.st_size, str(path), key, out)
        return _restored(info, st)

    return _replace(path, root, produce, "decrypted", dirs_to_sync)


def _restored(info: fmt.FileInfo | None, st: os.stat_result) -> _Attributes:
    if info is None:  # a file from another CMS producer: keep what the file has
        return _Attributes(
            stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns
        )
    return _Attributes(info.mode, info.uid, info.gid, st.st_atime_ns, info.mtime_ns)


def rewrap_file(
    path: Path,
    key: Key,
    recipients: Sequence[Recipient],
    *,
    batches: Batches | None = None,
    root: Path | None = None,
    dirs_to_sync: set[str] | None = None,
) -> Outcome:
    """Give `path` new recipients without re-encrypting its content."""

    def produce(src: io.BufferedReader, st: os.stat_result, out: BinaryIO) -> _Attributes:
        stream.rewrap(src, st.st_size, str(path), key, out, recipients=recipients, batches=batches)
        return _Attributes(
            stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_atime_ns, st.st_mtime_ns
        )

    return _replace(path, root, produce, "rewrapped", dirs_to_sync)


def decrypt_to(path: Path, key: Key, output: Path) -> Outcome:
    """Decrypt `path` to the new file `output`, published only once the tag verifies."""
    with _directory(path, None) as directory:
        src, st = _open_regular(directory, path)
    with (
        src,
        _io_errors(output),
        _directory(output, None) as out_dir,
        _temporary(out_dir, output) as (out, temp),
    ):
        _, info = stream.decrypt(src, st.st_size, str(path), key, out)
        attrs = _restored(info, st)
        if os.geteuid() != 0:  # only root may give files away; keep ours
            attrs = _Attributes(
                attrs.mode, os.getuid(), os.getgid(), attrs.atime_ns, attrs.mtime_ns
            )
        _finish(out, attrs, output)
        try:
            os.link(temp, output.name, src_dir_fd=out_dir, dst_dir_fd=out_dir)
        except FileExistsError:
            raise FilecryptError(
                f"{output}: already exists; not overwritten",
                "choose another -o path or remove the file first",
            ) from None
        os.fsync(out_dir)
        return Outcome(output, "decrypted", st.st_size, os.fstat(out.fileno()).st_size)


def verify_file(path: Path, key: Key) -> tuple[fmt.Envelope, fmt.FileInfo | None]:
    """Decrypt without writing anything: proves the key works, the file is intact, and the
    key's certificate recipient info (what OpenSSL uses) holds the same key as the batch's."""
    with _directory(path, None) as directory:
        src, st = _open_regular(directory, path)
    with src:
        return stream.decrypt(src, st.st_size, str(path), key, None, check_recipients=True)


def check_file(path: Path, *, root: Path | None = None) -> Outcome:
    """What `encrypt_file` would do, changing nothing (check mode): the same refusals, then
    "would-encrypt" or "already-encrypted"."""
    with _directory(path, root) as directory:
        src, st = _open_regular(directory, path)
    with src:
        done = is_encrypted(src, st.st_size, str(path))
    return Outcome(path, "already-encrypted" if done else "would-encrypt", st.st_size, st.st_size)


def inspect_file(path: Path) -> tuple[fmt.Envelope, int]:
    """The structure of an encrypted file (no key needed) and its size."""
    with _directory(path, None) as directory:
        src, st = _open_regular(directory, path)
    with src:
        return fmt.parse(src, st.st_size, str(path)), st.st_size


def recover(root: Path) -> list[Path]:
    """Remove temporary files left by interrupted operations under `root`.

    A temporary file is only ever the not-yet-published new version, so removing it loses
    nothing. Files still locked by a live process are skipped.
    """
    removed: list[Path] = []
    for dirpath, _dirs, files in os.walk(root):
        for name in files:
            if TEMP_NAME.fullmatch(name) and _remove_abandoned(Path(dirpath), name):
                removed.append(Path(dirpath) / name)
    return removed


def _remove_abandoned(directory: Path, name: str) -> bool:
    try:
        fd = os.open(directory / name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return False  # gone meanwhile, or a symlink: not ours
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return False  # a live operation is writing it
        (directory / name).unlink()
        return True
    finally:
        os.close(fd)
