"""In-place encryption in a store: attributes kept, unsafe files refused, idempotent, recovery."""

import errno
import fcntl
import os
import stat
from pathlib import Path

import pytest
from fc_helpers import Party

from imgvault.filecrypt import inplace
from imgvault.filecrypt.errors import (
    AuthenticationError,
    FilecryptError,
    MalformedError,
    NoMatchingRecipientError,
    UnsafeFileError,
)

MTIME_NS = 1_600_000_000_123_456_789


def _image(path: Path, data: bytes, mode: int = 0o640) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    path.chmod(mode)
    os.utime(path, ns=(MTIME_NS, MTIME_NS))
    return path


def _no_temporaries(root: Path) -> bool:
    return not [p for p in root.rglob("*") if inplace.TEMP_NAME.fullmatch(p.name)]


def test_encrypt_keeps_mode_owner_and_mtime_and_decrypt_restores(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    if os.geteuid() != 0:
        pytest.fail("this test changes file owners: run it as root (scripts/run-tests does)")
    data = os.urandom(200_000)
    path = _image(tmp_path / "store" / "ct.dcm", data, 0o640)
    os.chown(path, 1234, 5678)
    outcome = inplace.encrypt_file(path, [pki["alice"].recipient], root=tmp_path / "store")
    assert outcome.action == "encrypted"
    st = path.stat()
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1234, 5678)
    assert st.st_mtime_ns == MTIME_NS
    assert path.read_bytes() != data
    os.chown(path, 0, 0)  # an admin's mistake after encryption: decryption restores the owner
    path.chmod(0o600)
    assert inplace.decrypt_file(path, pki["alice"].as_key).action == "decrypted"
    st = path.stat()
    assert path.read_bytes() == data
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 1234, 5678)
    assert st.st_mtime_ns == MTIME_NS
    assert _no_temporaries(tmp_path)


def test_encrypting_twice_changes_nothing(pki: dict[str, Party], tmp_path: Path) -> None:
    path = _image(tmp_path / "a.dcm", b"\0" * 128 + b"DICM" + os.urandom(5000))
    inplace.encrypt_file(path, [pki["alice"].recipient])
    first, first_stat = path.read_bytes(), path.stat()
    outcome = inplace.encrypt_file(path, [pki["alice"].recipient, pki["bob"].recipient])
    assert outcome.action == "already-encrypted"
    assert path.read_bytes() == first
    assert path.stat().st_ino == first_stat.st_ino
    assert _no_temporaries(tmp_path)


def test_damaged_encrypted_file_is_not_encrypted_again(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    path = _image(tmp_path / "a.dcm", os.urandom(5000))
    inplace.encrypt_file(path, [pki["alice"].recipient])
    damaged = path.read_bytes()[:-30]
    path.write_bytes(damaged)
    with pytest.raises(MalformedError, match="not a valid encrypted file"):
        inplace.encrypt_file(path, [pki["alice"].recipient])
    assert path.read_bytes() == damaged


def test_symlink_is_refused_and_its_target_untouched(pki: dict[str, Party], tmp_path: Path) -> None:
    target = _image(tmp_path / "outside" / "secret.dcm", b"plain")
    link = tmp_path / "store" / "link.dcm"
    link.parent.mkdir()
    link.symlink_to(target)
    with pytest.raises(UnsafeFileError, match="symbolic link") as caught:
        inplace.encrypt_file(link, [pki["alice"].recipient], root=tmp_path / "store")
    assert caught.value.hint
    assert target.read_bytes() == b"plain"


def test_fifo_is_refused_without_blocking(pki: dict[str, Party], tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.dcm"
    os.mkfifo(fifo)
    with pytest.raises(UnsafeFileError, match="not a regular file"):
        inplace.encrypt_file(fifo, [pki["alice"].recipient])


def test_device_is_refused(pki: dict[str, Party], tmp_path: Path) -> None:
    if os.geteuid() != 0:
        pytest.fail("creating a device node needs root: run as root (scripts/run-tests does)")
    device = tmp_path / "null.dcm"
    os.mknod(device, 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    with pytest.raises(UnsafeFileError, match="not a regular file"):
        inplace.encrypt_file(device, [pki["alice"].recipient])


def test_hard_linked_file_is_refused(pki: dict[str, Party], tmp_path: Path) -> None:
    path = _image(tmp_path / "a.dcm", b"plain")
    (tmp_path / "b.dcm").hardlink_to(path)
    with pytest.raises(UnsafeFileError, match="2 hard links") as caught:
        inplace.encrypt_file(path, [pki["alice"].recipient])
    assert "cp" in caught.value.hint
    assert path.read_bytes() == b"plain"


def test_files_outside_the_root_are_refused(pki: dict[str, Party], tmp_path: Path) -> None:
    store = tmp_path / "store"
    outside = _image(tmp_path / "other" / "a.dcm", b"plain")
    store.mkdir()
    (store / "escape").symlink_to(tmp_path / "other")  # a directory link leading out
    for path in (outside, store / "escape" / "a.dcm", store / ".." / "other" / "a.dcm"):
        with pytest.raises(UnsafeFileError, match="outside the store root"):
            inplace.encrypt_file(path, [pki["alice"].recipient], root=store)
    assert outside.read_bytes() == b"plain"


def test_failed_decryption_leaves_the_file_and_no_plaintext(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    path = _image(tmp_path / "a.dcm", os.urandom(50_000))
    inplace.encrypt_file(path, [pki["alice"].recipient])
    damaged = bytearray(path.read_bytes())
    damaged[-1000] ^= 1
    path.write_bytes(damaged)
    with pytest.raises(AuthenticationError):
        inplace.decrypt_file(path, pki["alice"].as_key)
    with pytest.raises(AuthenticationError):
        inplace.decrypt_to(path, pki["alice"].as_key, tmp_path / "out.dcm")
    assert path.read_bytes() == damaged
    assert not (tmp_path / "out.dcm").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.dcm"]


def test_decrypt_to_a_new_file_never_overwrites(pki: dict[str, Party], tmp_path: Path) -> None:
    data = os.urandom(1000)
    path = _image(tmp_path / "a.dcm", data)
    inplace.encrypt_file(path, [pki["alice"].recipient])
    out = tmp_path / "out.dcm"
    inplace.decrypt_to(path, pki["alice"].as_key, out)
    assert out.read_bytes() == data
    assert out.stat().st_mtime_ns == MTIME_NS
    with pytest.raises(FilecryptError, match="already exists"):
        inplace.decrypt_to(path, pki["alice"].as_key, out)
    assert _no_temporaries(tmp_path)


def test_rewrap_in_place(pki: dict[str, Party], tmp_path: Path) -> None:
    data = os.urandom(30_000)
    path = _image(tmp_path / "a.dcm", data)
    inplace.encrypt_file(path, [pki["alice"].recipient])
    outcome = inplace.rewrap_file(path, pki["alice"].as_key, [pki["bob"].recipient])
    assert outcome.action == "rewrapped"
    assert path.stat().st_mtime_ns == MTIME_NS
    with pytest.raises(NoMatchingRecipientError):
        inplace.verify_file(path, pki["alice"].as_key)
    inplace.decrypt_file(path, pki["bob"].as_key)
    assert path.read_bytes() == data


def test_recover_removes_abandoned_temporaries_only(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    abandoned = tmp_path / "sub" / ".imgvault-tmp.0123456789abcdef"
    abandoned.write_bytes(b"half-written")
    busy = tmp_path / ".imgvault-tmp.fedcba9876543210"
    busy.write_bytes(b"being written")
    unrelated = tmp_path / ".imgvault-tmp.notours"
    unrelated.write_bytes(b"keep")
    with busy.open("rb") as holder:
        fcntl.flock(holder, fcntl.LOCK_EX)
        assert inplace.recover(tmp_path) == [abandoned]
    assert busy.exists() and unrelated.exists() and not abandoned.exists()


def test_io_error_leaves_the_original_and_no_temporary(
    pki: dict[str, Party], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _image(tmp_path / "a.dcm", b"plain pixels")

    def failing_fsync(fd: int) -> None:
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(inplace.os, "fsync", failing_fsync)
    with pytest.raises(FilecryptError, match="Input/output error; the file was left") as caught:
        inplace.encrypt_file(path, [pki["alice"].recipient])
    assert "free space" in caught.value.hint
    assert path.read_bytes() == b"plain pixels"
    assert _no_temporaries(tmp_path)
