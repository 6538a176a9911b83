"""The Level 0 Discovery parser on byte-exact fixtures built from the TCG specification tables
(tests/fixtures/tcg/README.md names the section of each), and on truncated and garbage input."""

import contextlib
import random
import re
from pathlib import Path

import pytest

from imgvault.devices.tcg_discovery import (
    BlockSidFeature,
    DataStoreFeature,
    DiscoveryError,
    GeometryFeature,
    LockingFeature,
    SingleUserModeFeature,
    SscFeature,
    TPerFeature,
    UnknownFeature,
    parse_discovery,
    parse_protocol_list,
)

FIXTURES = Path(__file__).parent / "fixtures" / "tcg"


def load_hex(name: str) -> bytes:
    """An annotated hex fixture: '#' starts a comment, white space is ignored."""
    text = "".join(re.sub(r"#.*", "", line) for line in (FIXTURES / name).read_text().splitlines())
    return bytes.fromhex(re.sub(r"\s+", "", text))


def test_realistic_opal2_factory_state() -> None:
    raw = load_hex("opal2-sedutil-realistic.hex")
    assert len(raw) == 164
    d = parse_discovery(raw)
    assert d.length == 160 and d.revision == 1 and d.vendor_specific == bytes(32)
    assert [f.code for f in d.features] == [0x0001, 0x0002, 0x0003, 0x0201, 0x0202, 0x0203]
    assert d.features[0] == TPerFeature(1, 1, True, False, False, False, True, False)
    assert d.locking == LockingFeature(
        code=2,
        version=1,
        locking_supported=True,
        locking_enabled=False,
        locked=False,
        media_encryption=True,
        mbr_enabled=False,
        mbr_done=False,
    )
    assert d.features[2] == GeometryFeature(3, 1, True, 512, 8, 0)
    assert d.features[3] == SingleUserModeFeature(0x0201, 1, 9, False, False, True)
    assert d.features[4] == DataStoreFeature(0x0202, 1, 9, 10485760, 1)
    assert d.ssc == SscFeature(
        code=0x0203,
        version=1,
        base_comid=0x0001,
        number_of_comids=1,
        range_crossing=False,
        locking_admins=4,
        locking_users=9,
        initial_sid_pin_is_msid=True,
        revert_sid_pin_is_msid=True,
    )
    assert d.ssc is not None and d.ssc.ssc_name == "Opal 2"


def test_locked_opal2_with_every_feature_and_an_unknown_one() -> None:
    d = parse_discovery(load_hex("opal2-locked-all-features.hex"))
    assert d.length == 204
    tper = d.features[0]
    assert isinstance(tper, TPerFeature) and tper.comid_management and tper.buffer_management
    assert d.locking is not None
    assert (d.locking.locking_enabled, d.locking.locked, d.locking.mbr_enabled) == (
        True,
        True,
        True,
    )
    assert not d.locking.mbr_done
    assert d.features[2] == GeometryFeature(3, 1, True, 4096, 1, 0)
    opal1 = d.features[3]
    assert isinstance(opal1, SscFeature) and opal1.ssc_name == "Opal 1"
    assert (opal1.base_comid, opal1.range_crossing, opal1.locking_admins) == (0x1000, True, None)
    assert d.features[4] == SingleUserModeFeature(0x0201, 1, 16, True, False, True)
    assert d.features[5] == DataStoreFeature(0x0202, 1, 16, 0x00800000, 512)
    # Opal 2 wins over Opal 1 when a drive lists both.
    assert d.ssc is not None and d.ssc.code == 0x0203 and d.ssc.version == 2
    assert (d.ssc.number_of_comids, d.ssc.locking_admins, d.ssc.locking_users) == (2, 4, 8)
    assert d.ssc.initial_sid_pin_is_msid and not d.ssc.revert_sid_pin_is_msid
    assert d.features[7] == BlockSidFeature(0x0402, 1, True, True, True)
    assert d.features[8] == UnknownFeature(0xC001, 1, bytes.fromhex("deadbeef"))
    assert d.to_json()["features"][8] == {
        "name": "unknown",
        "code": 0xC001,
        "version": 1,
        "data": "deadbeef",
    }


@pytest.mark.parametrize(
    ("fixture", "ssc", "media_encryption", "locking_enabled"),
    [
        ("enterprise.hex", "Enterprise", True, True),
        ("opal1.hex", "Opal 1", True, False),
        ("pyrite1.hex", "Pyrite 1", False, False),
        ("pyrite2.hex", "Pyrite 2", False, True),
        ("opalite.hex", "Opalite", True, False),
        ("ruby.hex", "Ruby", True, True),
    ],
)
def test_each_security_subsystem_class(
    fixture: str, ssc: str, media_encryption: bool, locking_enabled: bool
) -> None:
    d = parse_discovery(load_hex(fixture))
    assert d.ssc is not None and d.ssc.ssc_name == ssc
    assert d.locking is not None and d.locking.locking_supported
    assert d.locking.media_encryption is media_encryption
    assert d.locking.locking_enabled is locking_enabled
    assert d.to_json()["ssc"] == ssc


def test_ssc_fields_per_class() -> None:
    enterprise = parse_discovery(load_hex("enterprise.hex")).ssc
    assert enterprise == SscFeature(0x0100, 1, 0x07FE, 10, True, None, None, None, None)
    pyrite2 = parse_discovery(load_hex("pyrite2.hex"))
    assert pyrite2.ssc == SscFeature(0x0303, 1, 1, 1, None, None, None, False, True)
    removal = pyrite2.features[-1]
    assert isinstance(removal, UnknownFeature) and removal.code == 0x0404
    assert len(removal.data) == 32 and removal.data[2] == 0x02
    ruby = parse_discovery(load_hex("ruby.hex"))
    assert ruby.ssc == SscFeature(0x0304, 1, 0x1000, 1, False, 4, 16, True, True)
    assert ruby.features[-1] == BlockSidFeature(0x0402, 1, False, False, False)


def test_padding_after_the_announced_length_is_ignored() -> None:
    raw = load_hex("opal1.hex")
    assert parse_discovery(raw + bytes(2048 - len(raw))) == parse_discovery(raw)


def test_header_only_response_has_no_features() -> None:
    header = (44).to_bytes(4, "big") + (1).to_bytes(4, "big") + bytes(40)
    assert parse_discovery(header).features == ()


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "0 bytes, shorter than the 48-byte header"),
        (bytes(47), "shorter than the 48-byte header"),
        (bytes(512), "header length field 0 is smaller than the header"),
        (b"\xff" * 512, "announces 4294967299 bytes but the response has only 512"),
    ],
)
def test_garbage_and_empty_responses_fail_clearly(data: bytes, message: str) -> None:
    with pytest.raises(DiscoveryError, match=re.escape(message)) as caught:
        parse_discovery(data)
    assert caught.value.hint and "bridge" in caught.value.hint


def test_every_truncation_of_a_real_response_fails_clearly() -> None:
    raw = load_hex("opal2-locked-all-features.hex")
    for cut in range(len(raw)):
        with pytest.raises(DiscoveryError):
            parse_discovery(raw[:cut])


def test_descriptor_running_past_the_announced_length() -> None:
    raw = bytearray(load_hex("opal1.hex"))
    raw[0:4] = (len(raw) - 4 - 2).to_bytes(4, "big")  # header now ends inside the last one
    with pytest.raises(DiscoveryError, match=r"feature 0x0200 at byte 80 announces 16 bytes"):
        parse_discovery(bytes(raw))
    raw[0:4] = (len(raw) - 4 + 2).to_bytes(4, "big")
    with pytest.raises(DiscoveryError, match="truncated"):
        parse_discovery(bytes(raw) + b"\x00")


def test_known_descriptor_too_short_for_its_layout() -> None:
    header = (48 - 4 + 8).to_bytes(4, "big") + bytes(44)
    geometry = bytes.fromhex("0003 10 04 01000000")
    with pytest.raises(
        DiscoveryError, match="feature 0x0003 has 4 bytes of data, its layout needs 28"
    ):
        parse_discovery(header + geometry)


def test_random_garbage_never_crashes() -> None:
    rng = random.Random(4)  # noqa: S311  (reproducible fuzz input, not a secret)
    for _ in range(2000):
        data = rng.randbytes(rng.randrange(0, 300))
        if len(data) >= 4 and rng.random() < 0.7:  # plausible lengths reach the descriptors
            data = (len(data) - 4).to_bytes(4, "big") + data[4:]
        with contextlib.suppress(DiscoveryError):
            parse_discovery(data)


def test_supported_protocol_lists() -> None:
    assert parse_protocol_list(load_hex("protocols-tcg.hex") + bytes(501)) == (0, 1, 2)
    assert parse_protocol_list(load_hex("protocols-none.hex")) == (0,)
    with pytest.raises(DiscoveryError, match="announces 3 entries but has 1"):
        parse_protocol_list(load_hex("protocols-tcg.hex")[:9])
    with pytest.raises(DiscoveryError, match="needs 8"):
        parse_protocol_list(b"\x00\x00")
