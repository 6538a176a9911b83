"""Streaming encryption and decryption: round trips, tamper detection, clear errors."""

import io
import os
import random
from pathlib import Path

import pytest
from fc_helpers import Party, decrypt_bytes, encrypt_bytes

from imgvault.filecrypt import format as fmt
from imgvault.filecrypt import inplace, stream
from imgvault.filecrypt.errors import (
    AuthenticationError,
    FilecryptError,
    MalformedError,
    NoMatchingRecipientError,
    NotEncryptedError,
    WrongKeyError,
)

KIB, MIB = 1024, 1024 * 1024
SIZES = [0, 1, 15, 16, 17, 64 * KIB - 1, 64 * KIB, 64 * KIB + 1, MIB - 1, MIB, MIB + 1]


@pytest.mark.parametrize("size", SIZES)
def test_round_trip(size: int, pki: dict[str, Party], tmp_path: Path) -> None:
    data = os.urandom(size)
    enc = encrypt_bytes(data, [pki["alice"].recipient, pki["bob"].recipient], tmp_path / "f")
    assert decrypt_bytes(enc, pki["alice"]) == data
    assert decrypt_bytes(enc, pki["bob"]) == data
    with enc.open("rb") as f:
        env = fmt.parse(f, enc.stat().st_size, "f")
    assert env.content_length == size
    assert env.unverified_file_info == fmt.FileInfo(size, 0o640, 1000, 1000, 1_700_000_000)


def test_chunk_boundaries_round_trip(pki: dict[str, Party], tmp_path: Path) -> None:
    for size in (stream.CHUNK - 1, stream.CHUNK + 1, 2 * stream.CHUNK + 17):
        data = os.urandom(size)
        enc = encrypt_bytes(data, [pki["alice"].recipient], tmp_path / f"f{size}")
        assert decrypt_bytes(enc, pki["alice"]) == data


def _rejects(path: Path, party: Party) -> None:
    with pytest.raises(FilecryptError):
        decrypt_bytes(path, party)


def test_every_single_bit_flip_is_rejected(pki: dict[str, Party], tmp_path: Path) -> None:
    """Exhaustive over a small file with one recipient (the recipient infos of other
    recipients are not authenticated by CMS; docs/filecrypt-format.md)."""
    original = encrypt_bytes(b"CT slice", [pki["alice"].recipient], tmp_path / "f").read_bytes()
    flipped = tmp_path / "flipped"
    accepted = []
    for bit in range(len(original) * 8):
        data = bytearray(original)
        data[bit // 8] ^= 1 << (bit % 8)
        flipped.write_bytes(data)
        try:
            decrypt_bytes(flipped, pki["alice"])
        except FilecryptError:
            continue
        accepted.append(bit)
    assert accepted == []


def test_random_bit_flips_in_a_large_file_are_rejected(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    original = encrypt_bytes(os.urandom(3 * MIB + 5), [pki["alice"].recipient], tmp_path / "f")
    data = original.read_bytes()
    rng = random.Random(5084)  # noqa: S311  # reproducible positions, not keys
    flipped = tmp_path / "flipped"
    for _ in range(24):
        bit = rng.randrange(len(data) * 8)
        damaged = bytearray(data)
        damaged[bit // 8] ^= 1 << (bit % 8)
        flipped.write_bytes(damaged)
        _rejects(flipped, pki["alice"])


def test_tampered_content_raises_authentication_error(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    enc = encrypt_bytes(b"x" * 1000, [pki["alice"].recipient], tmp_path / "f")
    data = bytearray(enc.read_bytes())
    data[-100] ^= 0x01  # inside the content
    enc.write_bytes(data)
    with pytest.raises(AuthenticationError, match="authentication failed") as caught:
        decrypt_bytes(enc, pki["alice"])
    assert "backup" in caught.value.hint


def test_tampered_file_facts_are_rejected(pki: dict[str, Party], tmp_path: Path) -> None:
    enc = encrypt_bytes(b"pixel data", [pki["alice"].recipient], tmp_path / "f")
    data = enc.read_bytes()
    old = fmt.FileInfo(10, 0o640, 1000, 1000, 1_700_000_000).encode()
    new = fmt.FileInfo(10, 0o666, 1000, 1000, 1_700_000_000).encode()
    assert len(old) == len(new) and data.count(old) == 1
    enc.write_bytes(data.replace(old, new))
    with pytest.raises(AuthenticationError, match="file facts or recipient infos were altered"):
        decrypt_bytes(enc, pki["alice"])


def test_wrong_key_names_the_recipients(pki: dict[str, Party], tmp_path: Path) -> None:
    enc = encrypt_bytes(b"abc", [pki["alice"].recipient], tmp_path / "f")
    with pytest.raises(NoMatchingRecipientError, match="not a recipient") as caught:
        decrypt_bytes(enc, pki["mallory"])
    assert "keyid " in caught.value.message
    assert "file inspect" in caught.value.hint


def test_key_that_matches_an_identifier_but_not_the_wrapped_key(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    """A recipient info whose key id is mallory's but whose wrapped key is alice's."""
    enc = encrypt_bytes(b"abc", [pki["alice"].recipient], tmp_path / "f")
    data = enc.read_bytes()
    alice_id, mallory_id = pki["alice"].recipient.key_id, pki["mallory"].recipient.key_id
    enc.write_bytes(data.replace(alice_id, mallory_id))
    with pytest.raises(WrongKeyError, match="cannot unwrap"):
        decrypt_bytes(enc, pki["mallory"])


@pytest.mark.parametrize("cut", [1, 16, 17, 100, -1])
def test_truncated_file_is_a_clear_error(cut: int, pki: dict[str, Party], tmp_path: Path) -> None:
    enc = encrypt_bytes(os.urandom(5000), [pki["alice"].recipient], tmp_path / "f")
    data = enc.read_bytes()
    enc.write_bytes(data[:cut])
    with pytest.raises((MalformedError, NotEncryptedError)) as caught:
        decrypt_bytes(enc, pki["alice"])
    assert caught.value.hint


def test_every_truncation_of_a_small_file_is_rejected(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    enc = encrypt_bytes(b"0123456789", [pki["alice"].recipient], tmp_path / "f")
    data = enc.read_bytes()
    for length in range(len(data)):
        enc.write_bytes(data[:length])
        _rejects(enc, pki["alice"])
    enc.write_bytes(data + b"\0")
    with pytest.raises(MalformedError, match="where its header says"):
        decrypt_bytes(enc, pki["alice"])


def test_plaintext_is_not_encrypted(tmp_path: Path) -> None:
    dicom = b"\0" * 128 + b"DICM" + os.urandom(200)
    with pytest.raises(NotEncryptedError, match="not an encrypted file"):
        fmt.parse(io.BytesIO(dicom), len(dicom), "ct.dcm")


def test_file_that_shrinks_while_encrypted_is_refused(pki: dict[str, Party]) -> None:
    info = fmt.FileInfo(size=100, mode=0o600, uid=0, gid=0, mtime_ns=0)
    with pytest.raises(stream.FileChangedError, match="shrank"):
        stream.encrypt(io.BytesIO(b"x" * 50), io.BytesIO(), info, [pki["alice"].recipient])
    with pytest.raises(stream.FileChangedError, match="grew"):
        stream.encrypt(io.BytesIO(b"x" * 150), io.BytesIO(), info, [pki["alice"].recipient])


def test_rewrap_replaces_recipients_and_keeps_ciphertext(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    data = os.urandom(70_000)
    enc = encrypt_bytes(data, [pki["alice"].recipient], tmp_path / "f")
    out = tmp_path / "rewrapped"
    with enc.open("rb") as s, out.open("wb") as d:
        stream.rewrap(
            s, enc.stat().st_size, "f", pki["alice"].as_key, d, recipients=[pki["bob"].recipient]
        )
    assert decrypt_bytes(out, pki["bob"]) == data
    with pytest.raises(NoMatchingRecipientError):
        decrypt_bytes(out, pki["alice"])
    # Same nonce, ciphertext and tag (the encrypted content info and what follows it), same
    # file facts: only the recipient infos changed.
    tail = 70_000 + 60  # content, its algorithm and headers, the tag
    assert enc.read_bytes()[-tail:] == out.read_bytes()[-tail:]
    envelopes = [inplace.inspect_file(p)[0] for p in (enc, out)]
    assert envelopes[0].unverified_file_info == envelopes[1].unverified_file_info


def test_rewrap_refuses_a_damaged_file(pki: dict[str, Party], tmp_path: Path) -> None:
    enc = encrypt_bytes(os.urandom(1000), [pki["alice"].recipient], tmp_path / "f")
    data = bytearray(enc.read_bytes())
    data[-50] ^= 0x80
    enc.write_bytes(data)
    with enc.open("rb") as s, pytest.raises(AuthenticationError):
        stream.rewrap(
            s, len(data), "f", pki["alice"].as_key, io.BytesIO(), recipients=[pki["bob"].recipient]
        )
