"""A full file system, for real: a 1 MiB tmpfs (root, so in the loop tier). Encrypting or
decrypting in place needs room for one more copy of the file; without it the command fails
with a clear message and the file, its name and its bytes stay exactly as they were, with no
temporary file (and so no plaintext) left behind."""

import errno
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from fc_helpers import Party, decrypt_bytes

from imgvault.cli import main as cli_main
from imgvault.filecrypt import inplace
from imgvault.filecrypt.errors import FilecryptError
from imgvault.system.run import run

pytestmark = pytest.mark.loop  # mounts a tmpfs: needs root
KIB = 1024


@pytest.fixture
def small_fs(tmp_path: Path) -> Iterator[Path]:
    mount_point = tmp_path / "small"
    mount_point.mkdir()
    run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "tmpfs", str(mount_point)], check=True)
    try:
        yield mount_point
    finally:
        run(["umount", str(mount_point)], check=True)


def fill(directory: Path, leave: int) -> Path:
    """A filler file that leaves about `leave` bytes free."""
    st = os.statvfs(directory)
    filler = directory / "filler"
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def temporaries(directory: Path) -> list[Path]:
    return list(directory.rglob(f"{inplace.TEMP_PREFIX}*"))


def test_encrypt_on_a_full_file_system_keeps_the_original_and_says_why(
    small_fs: Path, pki: dict[str, Party], capsys: pytest.CaptureFixture[str]
) -> None:
    image = small_fs / "ct.dcm"
    original = os.urandom(600 * KIB)  # a second copy does not fit in 1 MiB
    image.write_bytes(original)
    with pytest.raises(FilecryptError, match="No space left on device; the file was left"):
        inplace.encrypt_file(image, [pki["alice"].recipient])
    assert image.read_bytes() == original and temporaries(small_fs) == []

    code = cli_main.main(["file", "encrypt", str(image), "--recipient", str(pki["alice"].cert_pem)])
    err = capsys.readouterr().err
    assert code == 1 and "No space left on device" in err and "free space" in err
    assert image.read_bytes() == original and temporaries(small_fs) == []


def test_decrypt_on_a_full_file_system_keeps_the_encrypted_file_and_leaves_no_plaintext(
    small_fs: Path, pki: dict[str, Party]
) -> None:
    image = small_fs / "ct.dcm"
    original = os.urandom(300 * KIB)
    image.write_bytes(original)
    inplace.encrypt_file(image, [pki["alice"].recipient])
    encrypted = image.read_bytes()
    filler = fill(small_fs, leave=100 * KIB)
    with pytest.raises(FilecryptError, match="No space left on device") as caught:
        inplace.decrypt_file(image, pki["alice"].as_key)
    assert "free space" in caught.value.hint
    assert image.read_bytes() == encrypted and temporaries(small_fs) == []
    with pytest.raises(OSError, match="No space") as full:
        (small_fs / "out.dcm").write_bytes(original)
    assert full.value.errno == errno.ENOSPC
    (small_fs / "out.dcm").unlink()
    with pytest.raises(FilecryptError, match="No space left on device"):
        inplace.decrypt_to(image, pki["alice"].as_key, small_fs / "out.dcm")
    assert not (small_fs / "out.dcm").exists() and temporaries(small_fs) == []

    filler.unlink()  # room again: the same file decrypts, nothing was lost
    assert decrypt_bytes(image, pki["alice"]) == original
    inplace.decrypt_file(image, pki["alice"].as_key)
    assert image.read_bytes() == original
