"""The hand-framed DER (written for speed) equals what asn1crypto builds for the same values."""

import os

import pytest
from asn1crypto import cms, core

from imgvault.filecrypt import der
from imgvault.filecrypt import format as fmt


@pytest.mark.parametrize("value", [0, 1, 127, 128, 255, 256, -1, -128, -129, 2**63, -(2**70)])
def test_integer_is_minimal_twos_complement(value: int) -> None:
    assert der.integer(value) == core.Integer(value).dump()


@pytest.mark.parametrize("length", [0, 1, 127, 128, 255, 256, 65536])
def test_header_lengths(length: int) -> None:
    encoded = core.OctetString(b"\0" * length).dump()
    assert der.header(der.OCTET_STRING, length) == encoded[: len(encoded) - length]


def test_header_of_a_length_past_2_32() -> None:
    assert der.header(der.OCTET_STRING, 2**32 + 1) == bytes([0x04, 0x85, 1, 0, 0, 0, 1])


def test_file_info_matches_asn1crypto() -> None:
    info = fmt.FileInfo(size=2**33, mode=0o4755, uid=0, gid=65534, mtime_ns=-5)
    built = fmt.FileInfoValue(
        {
            "version": fmt.FORMAT_VERSION,
            "size": 2**33,
            "mode": 0o4755,
            "uid": 0,
            "gid": 65534,
            "mtime_ns": -5,
        }
    )
    assert info.encode() == built.dump()
    assert fmt.FileInfo.decode(info.encode()) == info


def test_content_algorithm_matches_asn1crypto() -> None:
    nonce = os.urandom(12)
    built = cms.EncryptionAlgorithm(
        {
            "algorithm": "aes256_gcm",
            "parameters": core.Any.load(
                fmt.GCMParameters({"aes_nonce": nonce, "aes_icvlen": 16}).dump()
            ),
        }
    )
    assert fmt.content_algorithm(nonce) == built.dump()


def test_set_of_is_sorted_as_der_requires() -> None:
    elements = [core.OctetString(b"\x02").dump(), core.OctetString(b"\x01\x05").dump()]
    built = core.SetOf({}, spec=core.OctetString)
    for e in elements:
        built.append(core.OctetString.load(e))
    assert der.set_of(elements) == built.dump(force=True)


@pytest.mark.parametrize("encoding", [fmt.OAEP_SHA256, fmt.OAEP_SHA256_NULL])
def test_accepted_key_encryption_parses_and_re_encodes_unchanged(encoding: bytes) -> None:
    """Why parse may skip the full parse of an algorithm equal to one of these: it would
    succeed, and the re-encoding the check used to compare is the same bytes."""
    algorithm = cms.KeyEncryptionAlgorithm.load(encoding, strict=True)
    assert algorithm.native["algorithm"] == "rsaes_oaep"
    assert algorithm.dump() == encoding
