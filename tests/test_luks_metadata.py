"""Parsing of real cryptsetup 2.6.1 output (fixtures dumped from headers made on loop files)."""

import json
from pathlib import Path

import pytest

from imgvault.volumes.luks import Pbkdf, describe_cipher, parse_luks1, parse_luks2

FIXTURES = Path(__file__).parent / "fixtures"
IDENTITY = {"VERSION": "2", "UUID": "c022aed3-3d21-42bf-94a9-bdf50936e535", "LABEL": "pacs-data"}


@pytest.mark.parametrize(
    ("cipher", "bits", "expected"),
    [
        ("aes-xts-plain64", 256, "aes-xts-plain64, 256-bit key = AES-128-XTS"),
        ("aes-xts-plain64", 512, "aes-xts-plain64, 512-bit key = AES-256-XTS"),
        ("aes-cbc-essiv:sha256", 256, "aes-cbc-essiv:sha256, 256-bit key = AES-256-CBC"),
        ("serpent-xts-plain64", 512, "serpent-xts-plain64, 512-bit key = SERPENT-256-XTS"),
    ],
)
def test_describe_cipher_spells_xts_key_halves(cipher: str, bits: int, expected: str) -> None:
    assert describe_cipher(cipher, bits) == expected


def test_parse_luks2_with_pbkdf2_and_argon2id_keyslots() -> None:
    metadata = json.loads((FIXTURES / "luks2-two-pbkdfs.json").read_text())
    header = parse_luks2(metadata, IDENTITY)
    assert header.version == 2
    assert header.format_name == "LUKS2"
    assert header.uuid == IDENTITY["UUID"]
    assert header.label == "pacs-data"
    assert header.cipher == "aes-xts-plain64"
    assert header.key_bits == 256
    assert header.sector_size == 4096
    assert header.hash == "sha256"
    assert [slot.id for slot in header.keyslots] == [0, 1, 2]
    assert header.keyslots[0].pbkdf == Pbkdf(kind="pbkdf2", hash="sha256", iterations=1000)
    assert header.keyslots[1].pbkdf == Pbkdf(
        kind="argon2id", iterations=4, memory_kib=1024, parallel=2
    )
    assert all(slot.priority == "normal" for slot in header.keyslots)
    assert header.tokens == ()
    assert header.segments[0].size is None  # "dynamic"
    assert header.segments[0].offset == 16 * 1024 * 1024
    assert header.reencryption is None
    assert header.requirements == ()


def test_parse_luks2_detects_an_interrupted_reencryption() -> None:
    metadata = json.loads((FIXTURES / "luks2-reencrypt-interrupted.json").read_text())
    header = parse_luks2(metadata, IDENTITY)
    assert header.reencryption is not None
    assert header.reencryption.mode == "reencrypt"
    assert header.reencryption.direction == "forward"
    assert "online-reencrypt-v2" in header.requirements
    assert [slot.type for slot in header.keyslots] == ["luks2", "luks2", "reencrypt"]
    assert "in-reencryption" in header.segments[1].flags


def test_parse_luks2_reads_keyslot_priority_and_tokens() -> None:
    metadata = json.loads((FIXTURES / "luks2-two-pbkdfs.json").read_text())
    metadata["keyslots"]["1"]["priority"] = 2
    metadata["keyslots"]["2"]["priority"] = 0
    metadata["tokens"] = {"0": {"type": "systemd-tpm2", "keyslots": ["1"]}}
    header = parse_luks2(metadata, IDENTITY)
    assert [slot.priority for slot in header.keyslots] == ["normal", "prefer", "ignore"]
    assert header.tokens[0].type == "systemd-tpm2"
    assert header.tokens[0].keyslots == (1,)


def test_parse_luks1_text_dump() -> None:
    header = parse_luks1((FIXTURES / "luks1-dump.txt").read_text(), {"VERSION": "1"})
    assert header.version == 1
    assert header.cipher == "aes-xts-plain64"
    assert header.key_bits == 512
    assert header.cipher_description.endswith("AES-256-XTS")
    assert header.uuid == "88687440-bf1e-43e8-9c78-5129628ec320"
    assert header.hash == "sha256"
    assert [slot.id for slot in header.keyslots] == [0]
    assert header.keyslots[0].pbkdf is not None
    assert header.keyslots[0].pbkdf.iterations == 9246


def test_pbkdf_arguments() -> None:
    assert Pbkdf().cryptsetup_args() == ["--pbkdf", "argon2id"]
    assert Pbkdf(kind="argon2id", iterations=4, memory_kib=65536, parallel=2).cryptsetup_args() == [
        "--pbkdf",
        "argon2id",
        "--pbkdf-force-iterations",
        "4",
        "--pbkdf-memory",
        "65536",
        "--pbkdf-parallel",
        "2",
    ]
