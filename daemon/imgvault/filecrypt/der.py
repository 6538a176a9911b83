"""Just enough DER/BER to frame a CMS file around content that is streamed, not held in memory.

asn1crypto builds and parses every bounded part (recipient infos, algorithm identifiers,
attributes); it needs a whole value in memory, so the outer SEQUENCE headers and the
encrypted-content octet string, whose length is the file size, are framed and walked here.
Reading accepts what OpenSSL writes too: definite or indefinite lengths and constructed
(chunked) octet strings.
"""

import io
from dataclasses import dataclass

from imgvault.filecrypt.errors import MalformedError

# Tags used by the CMS layout (class and constructed bits included).
SEQUENCE = 0x30
SET = 0x31
OCTET_STRING = 0x04
OID = 0x06
INTEGER = 0x02
CONTEXT_0_CONSTRUCTED = 0xA0
CONTEXT_0_PRIMITIVE = 0x80
CONTEXT_1_CONSTRUCTED = 0xA1
CONTEXT_2_CONSTRUCTED = 0xA2
CONTEXT_4_CONSTRUCTED = 0xA4
END_OF_CONTENTS = 0x00

# Bounded parts (everything but the content) are read into memory only up to this size.
MAX_BOUNDED = 1 << 20


def header(tag: int, length: int) -> bytes:
    """The DER identifier and definite-length octets of a value of `length` content bytes."""
    if length < 0x80:
        return bytes((tag, length))
    body = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes((tag, 0x80 | len(body))) + body


def tlv(tag: int, content: bytes) -> bytes:
    return header(tag, len(content)) + content


def integer(value: int) -> bytes:
    """DER INTEGER: minimal two's complement."""
    magnitude = value if value >= 0 else ~value
    return tlv(INTEGER, value.to_bytes(magnitude.bit_length() // 8 + 1, "big", signed=True))


def set_order(encodings: list[bytes]) -> list[bytes]:
    """The elements of a DER SET OF in their encoded order: ascending encodings (X.690 §11.6)."""
    longest = max((len(e) for e in encodings), default=0)
    return sorted(encodings, key=lambda e: e.ljust(longest, b"\0"))


def set_of(encodings: list[bytes]) -> bytes:
    return tlv(SET, b"".join(set_order(encodings)))


@dataclass(frozen=True)
class Header:
    tag: int
    length: int | None  # None: indefinite (BER), ended by an end-of-contents marker
    offset: int  # of the identifier octet
    size: int  # of identifier plus length octets

    @property
    def content_offset(self) -> int:
        return self.offset + self.size

    @property
    def end(self) -> int:
        if self.length is None:
            raise MalformedError("indefinite length where a definite one is required")
        return self.content_offset + self.length


class Reader:
    """Walks TLVs in a seekable file, checking each against the bytes that remain."""

    def __init__(self, f: io.BufferedIOBase, size: int, name: str) -> None:
        self.f = f
        self.size = size
        self.name = name

    def broken(self, what: str) -> MalformedError:
        return MalformedError(
            f"{self.name}: not a valid encrypted file ({what})",
            "the file is truncated or damaged; restore it from a backup or replica",
        )

    def tell(self) -> int:
        return self.f.tell()

    def _byte(self) -> int:
        b = self.f.read(1)
        if not b:
            raise self.broken(f"ends early at byte {self.f.tell()}")
        return b[0]

    def header(self, limit: int | None = None) -> Header:
        """The next header; its content must fit before `limit` (default: end of file)."""
        offset = self.f.tell()
        tag = self._byte()
        if tag & 0x1F == 0x1F:
            raise self.broken(f"multi-byte tag at byte {offset}")
        first = self._byte()
        length: int | None
        if first < 0x80:
            length = first
        elif first == 0x80:
            if not tag & 0x20:
                raise self.broken(f"indefinite length on a primitive value at byte {offset}")
            length = None
        else:
            count = first & 0x7F
            if count > 8:
                raise self.broken(f"length of {count} octets at byte {offset}")
            raw = self.f.read(count)
            if len(raw) != count:
                raise self.broken(f"ends early at byte {offset}")
            length = int.from_bytes(raw, "big")
        h = Header(tag, length, offset, self.f.tell() - offset)
        bound = self.size if limit is None else limit
        if length is not None and h.end > bound:
            raise self.broken(f"value at byte {offset} runs past its container")
        return h

    def expect(self, tag: int, what: str, limit: int | None = None) -> Header:
        h = self.header(limit)
        if h.tag != tag:
            raise self.broken(f"expected {what} at byte {h.offset}, found tag 0x{h.tag:02x}")
        return h

    def value(self, h: Header) -> bytes:
        """The whole encoding (header included) of a definite-length value."""
        if h.length is None or h.length > MAX_BOUNDED:
            raise self.broken(f"value at byte {h.offset} is too large or of indefinite length")
        self.f.seek(h.offset)
        raw = self.f.read(h.size + h.length)
        if len(raw) != h.size + h.length:
            raise self.broken(f"ends early in the value at byte {h.offset}")
        return raw

    def peek_tag(self) -> int | None:
        pos = self.f.tell()
        b = self.f.read(1)
        self.f.seek(pos)
        return b[0] if b else None

    def end_of_contents(self, h: Header) -> None:
        """Close a constructed value: its end-of-contents marker, or its exact definite end."""
        if h.length is None:
            if self.f.read(2) != b"\0\0":
                raise self.broken(f"missing end-of-contents for the value at byte {h.offset}")
        elif self.f.tell() != h.end:
            raise self.broken(f"value at byte {h.offset} has trailing data")
