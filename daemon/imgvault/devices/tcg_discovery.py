"""TCG Storage Level 0 Discovery: what security subsystem a drive implements, and its state.

A drive answers IF-RECV with Security Protocol 0x01, ComID 0x0001 with a 48-byte header and a
list of feature descriptors (TCG Storage Architecture Core Specification 2.01, 3.3.6 "Level 0
Discovery"). Each descriptor is a 4-byte header (feature code, version nibble, length of the data
that follows) and feature data laid out by the specification that defines the feature; the
section of each is named on its dataclass. Multi-byte fields are big-endian.

The parser is a pure function over bytes so that it is tested byte-exactly on fixtures
(tests/fixtures/tcg/); descriptors it does not know are kept as `UnknownFeature`, never dropped.
"""

import struct
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from imgvault.errors import ImgvaultError

HEADER_LENGTH = 48
DESCRIPTOR_HEADER_LENGTH = 4


class DiscoveryError(ImgvaultError):
    """The drive's Level 0 Discovery response is malformed (truncated, garbage, inconsistent)."""

    def __init__(self, message: str) -> None:
        super().__init__(
            f"invalid TCG Level 0 Discovery response: {message}",
            "the drive or the bridge in front of it returned data that is not a TCG Level 0 "
            "Discovery response; connect the drive directly (SATA/NVMe) and try again",
        )


@dataclass(frozen=True)
class Feature:
    code: int
    version: int

    name = "feature"

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, **asdict(self)}


@dataclass(frozen=True)
class TPerFeature(Feature):
    """Core Spec 2.01, 3.3.6.4 TPer Feature (0x0001)."""

    sync: bool
    asynchronous: bool
    ack_nak: bool
    buffer_management: bool
    streaming: bool
    comid_management: bool

    name = "TPer"


@dataclass(frozen=True)
class LockingFeature(Feature):
    """Core Spec 2.01, 3.3.6.5 Locking Feature (0x0002): the state that decides protection."""

    locking_supported: bool
    locking_enabled: bool
    locked: bool
    media_encryption: bool
    mbr_enabled: bool
    mbr_done: bool

    name = "Locking"


@dataclass(frozen=True)
class GeometryFeature(Feature):
    """Opal SSC 2.01, 3.1.1.4 Geometry Reporting Feature (0x0003)."""

    align_required: bool
    logical_block_size: int
    alignment_granularity: int
    lowest_aligned_lba: int

    name = "Geometry"


@dataclass(frozen=True)
class SscFeature(Feature):
    """A Security Subsystem Class descriptor: which SSC the drive implements and its ComIDs.

    Enterprise SSC 1.01 3.6.2.7 (0x0100); Opal SSC 1.00 3.1.1.3 (0x0200); Opal SSC 2.01
    3.1.1.5 (0x0203); Opalite SSC 1.00 3.1.1.3 (0x0301); Pyrite SSC 1.00 3.1.1.3 (0x0302) and
    2.00 3.1.1.3 (0x0303); Ruby SSC 1.00 3.1.1.3 (0x0304). Fields a class does not define are
    None (admins/users exist only in Opal 2 and Ruby, range crossing only in Enterprise and
    Opal, the C_PIN_SID indicators only from Opal 2 on).
    """

    base_comid: int
    number_of_comids: int
    range_crossing: bool | None
    locking_admins: int | None
    locking_users: int | None
    initial_sid_pin_is_msid: bool | None
    revert_sid_pin_is_msid: bool | None

    name = "SSC"

    @property
    def ssc_name(self) -> str:
        return SSC_NAMES[self.code]

    def to_json(self) -> dict[str, Any]:
        return {**super().to_json(), "name": self.ssc_name}


@dataclass(frozen=True)
class SingleUserModeFeature(Feature):
    """Opal Feature Set: Single User Mode 1.00, 4.2.1 (0x0201)."""

    number_of_locking_objects: int
    any_in_single_user_mode: bool
    all_in_single_user_mode: bool
    policy_owned_by_user: bool

    name = "Single User Mode"


@dataclass(frozen=True)
class DataStoreFeature(Feature):
    """Opal Feature Set: Additional DataStore Tables 1.00, 4.1.1 (0x0202)."""

    max_tables: int
    max_total_size: int
    table_size_alignment: int

    name = "DataStore"


@dataclass(frozen=True)
class BlockSidFeature(Feature):
    """Feature Set: Block SID Authentication 1.00, 4.1.1 (0x0402)."""

    sid_value_is_msid: bool
    sid_authentication_blocked: bool
    hardware_reset_unblocks: bool

    name = "Block SID Authentication"


@dataclass(frozen=True)
class UnknownFeature(Feature):
    """A descriptor this parser does not decode, kept with its raw data."""

    data: bytes

    name = "unknown"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "code": self.code,
            "version": self.version,
            "data": self.data.hex(),
        }


@dataclass(frozen=True)
class Discovery:
    """A parsed Level 0 Discovery response (Core Spec 2.01, 3.3.6.3, Table 39 header)."""

    length: int  # "Length of Parameter Data": the bytes after this 4-byte field
    revision: int
    vendor_specific: bytes
    features: tuple[Feature, ...]

    def find(self, kind: type[Feature]) -> Feature | None:
        return next((f for f in self.features if type(f) is kind), None)

    @property
    def locking(self) -> LockingFeature | None:
        found = self.find(LockingFeature)
        return found if isinstance(found, LockingFeature) else None

    @property
    def ssc(self) -> SscFeature | None:
        """The most capable SSC the drive reports (drives may list Opal 1 next to Opal 2)."""
        sscs = [f for f in self.features if isinstance(f, SscFeature)]
        return min(sscs, key=lambda f: SSC_PREFERENCE.index(f.code), default=None)

    def to_json(self) -> dict[str, Any]:
        return {
            "length": self.length,
            "revision": self.revision,
            "ssc": self.ssc.ssc_name if self.ssc else None,
            "features": [f.to_json() for f in self.features],
        }


SSC_NAMES = {
    0x0100: "Enterprise",
    0x0200: "Opal 1",
    0x0203: "Opal 2",
    0x0301: "Opalite",
    0x0302: "Pyrite 1",
    0x0303: "Pyrite 2",
    0x0304: "Ruby",
}
SSC_PREFERENCE = (0x0203, 0x0304, 0x0100, 0x0200, 0x0301, 0x0303, 0x0302)


def _bit(byte: int, n: int) -> bool:
    return bool(byte >> n & 1)


def _tper(code: int, version: int, d: bytes) -> Feature:
    b = d[0]
    return TPerFeature(
        code, version, _bit(b, 0), _bit(b, 1), _bit(b, 2), _bit(b, 3), _bit(b, 4), _bit(b, 6)
    )


def _locking(code: int, version: int, d: bytes) -> Feature:
    b = d[0]
    return LockingFeature(code, version, *(_bit(b, n) for n in range(6)))


def _geometry(code: int, version: int, d: bytes) -> Feature:
    block_size, granularity, lowest = struct.unpack_from(">IQQ", d, 8)
    return GeometryFeature(code, version, _bit(d[0], 0), block_size, granularity, lowest)


def _ssc(code: int, version: int, d: bytes) -> Feature:
    base, count = struct.unpack_from(">HH", d, 0)
    crossing = _bit(d[4], 0) if code in (0x0100, 0x0200, 0x0203, 0x0304) else None
    admins = users = None
    if code in (0x0203, 0x0304):
        admins, users = struct.unpack_from(">HH", d, 5)
    initial = revert = None
    if code not in (0x0100, 0x0200):
        # 0x00: C_PIN_SID is C_PIN_MSID; 0xFF: vendor-unique (Opal SSC 2.01, Table 10).
        initial, revert = d[9] == 0x00, d[10] == 0x00
    return SscFeature(code, version, base, count, crossing, admins, users, initial, revert)


def _single_user(code: int, version: int, d: bytes) -> Feature:
    (objects,) = struct.unpack_from(">I", d, 0)
    b = d[4]
    return SingleUserModeFeature(code, version, objects, _bit(b, 0), _bit(b, 1), _bit(b, 2))


def _datastore(code: int, version: int, d: bytes) -> Feature:
    tables, total, alignment = struct.unpack_from(">HII", d, 2)
    return DataStoreFeature(code, version, tables, total, alignment)


def _block_sid(code: int, version: int, d: bytes) -> Feature:
    return BlockSidFeature(code, version, _bit(d[0], 0), _bit(d[0], 1), _bit(d[1], 0))


# feature code -> (bytes of feature data the decoder reads, decoder)
_DECODERS: dict[int, tuple[int, Callable[[int, int, bytes], Feature]]] = {
    0x0001: (1, _tper),
    0x0002: (1, _locking),
    0x0003: (28, _geometry),
    0x0100: (5, _ssc),
    0x0200: (5, _ssc),
    0x0201: (5, _single_user),
    0x0202: (12, _datastore),
    0x0203: (11, _ssc),
    0x0301: (11, _ssc),
    0x0302: (11, _ssc),
    0x0303: (11, _ssc),
    0x0304: (11, _ssc),
    0x0402: (2, _block_sid),
}


def parse_discovery(response: bytes) -> Discovery:
    """Parse a Level 0 Discovery response; DiscoveryError if it is truncated or inconsistent.

    Bytes past "Length of Parameter Data" + 4 are the unused rest of the transfer buffer and
    are ignored, as the Core Spec says.
    """
    if len(response) < HEADER_LENGTH:
        raise DiscoveryError(f"{len(response)} bytes, shorter than the {HEADER_LENGTH}-byte header")
    length, revision = struct.unpack_from(">II", response, 0)
    end = length + 4
    if end < HEADER_LENGTH:
        raise DiscoveryError(f"header length field {length} is smaller than the header itself")
    if end > len(response):
        raise DiscoveryError(
            f"header announces {end} bytes but the response has only {len(response)} (truncated)"
        )
    features: list[Feature] = []
    offset = HEADER_LENGTH
    while offset < end:
        if offset + DESCRIPTOR_HEADER_LENGTH > end:
            raise DiscoveryError(f"truncated feature descriptor header at byte {offset}")
        code, version_byte, data_length = struct.unpack_from(">HBB", response, offset)
        data_start = offset + DESCRIPTOR_HEADER_LENGTH
        data = response[data_start : data_start + data_length]
        if data_start + data_length > end:
            raise DiscoveryError(
                f"feature 0x{code:04x} at byte {offset} announces {data_length} bytes of data "
                f"but only {end - data_start} remain (truncated)"
            )
        version = version_byte >> 4
        decoder = _DECODERS.get(code)
        if decoder is None:
            features.append(UnknownFeature(code, version, bytes(data)))
        elif data_length < decoder[0]:
            raise DiscoveryError(
                f"feature 0x{code:04x} has {data_length} bytes of data, its layout needs "
                f"{decoder[0]}"
            )
        else:
            features.append(decoder[1](code, version, bytes(data)))
        offset = data_start + data_length
    return Discovery(length, revision, bytes(response[16:48]), tuple(features))


def parse_protocol_list(response: bytes) -> tuple[int, ...]:
    """The supported security protocols (IF-RECV protocol 0x00, SPSP 0x0000).

    Layout (SPC-4 7.7.1 Table 511, ACS-3 7.56.6.2, NVMe 1.4 5.25): 6 reserved bytes, a 2-byte
    list length, then one byte per protocol.
    """
    if len(response) < 8:
        raise DiscoveryError(f"supported protocol list of {len(response)} bytes, needs 8")
    (count,) = struct.unpack_from(">H", response, 6)
    if 8 + count > len(response):
        raise DiscoveryError(
            f"supported protocol list announces {count} entries but has {len(response) - 8}"
        )
    return tuple(response[8 : 8 + count])
