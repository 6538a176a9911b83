"""The imgvault encrypted-file format: DER CMS AuthEnvelopedData (RFC 5083, RFC 5084).

See docs/filecrypt-format.md. `frame` returns the bytes before and after the streamed
ciphertext; `parse` walks a file's structure without reading its content, which is how an
encrypted file is recognised and how decryption finds the recipients, the batch-key record,
the file facts, the GCM parameters, any authAttrs (the GCM AAD, which follow the ciphertext)
and the tag.
"""

import hmac
import io
from dataclasses import dataclass

from asn1crypto import cms, core
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from imgvault.filecrypt import der
from imgvault.filecrypt.errors import (
    AuthenticationError,
    MalformedError,
    NotEncryptedError,
    UnsupportedError,
)
from imgvault.secret import Secret

FORMAT_VERSION = 2  # what imgvault writes
READABLE_VERSIONS = (1, 2)  # 1: the file-info MAC covers the facts only (no other infos)
NONCE_BYTES = 12
TAG_BYTES = 16
KEY_BYTES = 32

# OIDs. The file-info attribute lives under imgvault's UUID arc (ITU-T X.667, 2.25.<uuid>).
OID_AUTH_ENVELOPED_DATA = "1.2.840.113549.1.9.16.1.23"
OID_DATA = "1.2.840.113549.1.7.1"
OID_AES256_GCM = "2.16.840.1.101.3.4.1.46"
IMGVAULT_ARC = "2.25.317587659708337672856103874130586240980"
OID_FILE_INFO = f"{IMGVAULT_ARC}.1"
OID_BATCH_KEY = f"{IMGVAULT_ARC}.2"
OID_AES256_WRAP = "2.16.840.1.101.3.4.1.45"
FILE_INFO_MAC_LABEL = b"imgvault file-info v1"

# RSAES-OAEP, SHA-256, MGF1-SHA-256, empty label: the DER we write (hash parameters absent,
# as OpenSSL writes them) and the variant with NULL parameters; RFC 5754 allows both.
OAEP_SHA256 = bytes.fromhex(
    "303806092a864886f70d010107302ba00d300b0609608648016503040201a11a301806092a864886f70d"
    "010108300b0609608648016503040201"
)
OAEP_SHA256_NULL = bytes.fromhex(
    "303c06092a864886f70d010107302fa00f300d06096086480165030402010500a11c301a06092a864886"
    "f70d010108300d06096086480165030402010500"
)
_OAEP_SHA256_FORMS = (OAEP_SHA256, OAEP_SHA256_NULL)


# What asn1crypto raises on malformed input: not only ValueError (found by the bit-flip test).
ASN1_ERRORS = (ValueError, TypeError, AttributeError, KeyError, IndexError, OverflowError)


class GCMParameters(core.Sequence):  # type: ignore[misc]
    """RFC 5084 §3.2 (asn1crypto has no class for it). The ICV length defaults to 12."""

    _fields = [  # noqa: RUF012  # asn1crypto's declaration style
        ("aes_nonce", core.OctetString),
        ("aes_icvlen", core.Integer, {"default": 12}),
    ]


class FileInfoValue(core.Sequence):  # type: ignore[misc]
    """The file facts in the `ori` record: what restoring the file needs, and no PHI."""

    _fields = [  # noqa: RUF012
        ("version", core.Integer),
        ("size", core.Integer),
        ("mode", core.Integer),
        ("uid", core.Integer),
        ("gid", core.Integer),
        ("mtime_ns", core.Integer),
    ]


@dataclass(frozen=True)
class FileInfo:
    """Non-secret facts of the original file, authenticated by an HMAC keyed from the content
    key (OpenSSL 3.0 cannot read authAttrs; docs/filecrypt-format.md)."""

    size: int
    mode: int  # permission bits (st_mode & 0o7777)
    uid: int
    gid: int
    mtime_ns: int
    version: int = FORMAT_VERSION

    def encode(self) -> bytes:
        """DER of FileInfoValue (hand-framed: asn1crypto costs more per file than an fsync)."""
        fields = (self.version, self.size, self.mode, self.uid, self.gid, self.mtime_ns)
        return der.tlv(der.SEQUENCE, b"".join(der.integer(v) for v in fields))

    @classmethod
    def decode(cls, der_value: bytes) -> "FileInfo":
        v = FileInfoValue.load(der_value, strict=True)
        return cls(
            version=int(v["version"].native),
            size=int(v["size"].native),
            mode=int(v["mode"].native),
            uid=int(v["uid"].native),
            gid=int(v["gid"].native),
            mtime_ns=int(v["mtime_ns"].native),
        )

    def to_json(self) -> dict[str, int]:
        return {
            "format_version": self.version,
            "size": self.size,
            "mode": self.mode,
            "uid": self.uid,
            "gid": self.gid,
            "mtime_ns": self.mtime_ns,
        }


class FileInfoRecord(core.Sequence):  # type: ignore[misc]
    """oriValue of the file-info OtherRecipientInfo: the facts and their HMAC-SHA256."""

    _fields = [  # noqa: RUF012
        ("info", FileInfoValue),
        ("mac", core.OctetString),
    ]


@dataclass(frozen=True)
class FileInfoEntry:
    """The file-info `ori` record, parsed once: its facts, the exact DER they were MACed as,
    and the MAC."""

    info_der: bytes
    info: FileInfo
    mac: bytes


def _file_info_entry(info: cms.RecipientInfo) -> FileInfoEntry:
    record = FileInfoRecord.load(info.chosen["ori_value"].dump(), strict=True)
    info_der = bytes(record["info"].dump())
    return FileInfoEntry(info_der, FileInfo.decode(info_der), bytes(record["mac"].native))


def _file_info_mac(content_key: Secret, info_der: bytes, bound: bytes) -> bytes:
    """HMAC-SHA256 keyed by HKDF-SHA256(content key): only a holder of the key can forge it.
    `bound` (version 2) is the DER of every other recipient info, so none can be altered."""
    mac_key = HKDF(hashes.SHA256(), 32, salt=None, info=FILE_INFO_MAC_LABEL).derive(
        content_key.reveal()
    )
    return hmac.digest(mac_key, info_der + bound, "sha256")


def file_info_recipient(info: FileInfo, content_key: Secret, others: list[bytes]) -> bytes:
    """DER of the `ori` RecipientInfo carrying the file facts and their MAC.

    `others` are the file's other recipient infos. The `ori` sorts last in the DER SET OF
    (its tag 0xA4 is the highest), so they appear in the file in `der.set_order`.
    """
    info_der = info.encode()
    bound = b"".join(der.set_order(others)) if info.version >= 2 else b""
    mac = der.tlv(der.OCTET_STRING, _file_info_mac(content_key, info_der, bound))
    record = der.tlv(der.SEQUENCE, info_der + mac)
    return der.tlv(der.CONTEXT_4_CONSTRUCTED, _FILE_INFO_TLV + record)


def _oid_tlv(dotted: str) -> bytes:
    return bytes(core.ObjectIdentifier(dotted).dump())


OID_DATA_TLV = _oid_tlv(OID_DATA)
OID_AUTH_ENVELOPED_DATA_TLV = _oid_tlv(OID_AUTH_ENVELOPED_DATA)
_AES256_GCM_TLV = _oid_tlv(OID_AES256_GCM)
_FILE_INFO_TLV = _oid_tlv(OID_FILE_INFO)
BATCH_KEY_TLV = _oid_tlv(OID_BATCH_KEY)
AES256_WRAP_ALGORITHM = der.tlv(der.SEQUENCE, _oid_tlv(OID_AES256_WRAP))  # parameters absent
WRAPPED_KEY_BYTES = KEY_BYTES + 8  # RFC 3394: one 64-bit integrity block more
BATCH_ID_BYTES = 16
STEP_BYTES = 4  # the keyIdentifier is the batch id followed by the file's ratchet step
MAX_STEP = 1 << 16  # what a reader accepts: bounds the hashing a crafted step could cost


def content_algorithm(nonce: bytes) -> bytes:
    """DER of the AlgorithmIdentifier aes256-GCM with GCMParameters(nonce, ICV length 16)."""
    params = der.tlv(der.SEQUENCE, der.tlv(der.OCTET_STRING, nonce) + der.integer(TAG_BYTES))
    return der.tlv(der.SEQUENCE, _AES256_GCM_TLV + params)


def aad_of(auth_attrs: bytes) -> bytes:
    """RFC 5083 §2.1: the AAD is the DER of authAttrs with the EXPLICIT SET OF tag."""
    return bytes((der.SET,)) + auth_attrs[1:]


def frame(
    recipient_infos: list[bytes], nonce: bytes, content_length: int, auth_attrs: bytes
) -> tuple[bytes, bytes]:
    """The bytes before the ciphertext and the bytes after it minus the 16-byte tag.

    `auth_attrs` is the [1] IMPLICIT encoding (tag 0xA1), empty for none. DER throughout: the
    ciphertext is one primitive [0] octet string, its length equal to the plaintext's.
    """
    eci_body_length = (
        len(OID_DATA_TLV)
        + len(content_algorithm(nonce))
        + len(der.header(der.CONTEXT_0_PRIMITIVE, content_length))
        + content_length
    )
    eci_header = der.header(der.SEQUENCE, eci_body_length)
    version = der.tlv(der.INTEGER, b"\0")
    ris = der.set_of(recipient_infos)
    mac = der.header(der.OCTET_STRING, TAG_BYTES)
    aed_length = (
        len(version)
        + len(ris)
        + len(eci_header)
        + eci_body_length
        + len(auth_attrs)
        + len(mac)
        + TAG_BYTES
    )
    aed_header = der.header(der.SEQUENCE, aed_length)
    explicit = der.header(der.CONTEXT_0_CONSTRUCTED, len(aed_header) + aed_length)
    oid = OID_AUTH_ENVELOPED_DATA_TLV
    outer = der.header(der.SEQUENCE, len(oid) + len(explicit) + len(aed_header) + aed_length)
    prefix = b"".join(
        (
            outer,
            oid,
            explicit,
            aed_header,
            version,
            ris,
            eci_header,
            OID_DATA_TLV,
            content_algorithm(nonce),
            der.header(der.CONTEXT_0_PRIMITIVE, content_length),
        )
    )
    return prefix, auth_attrs + mac


@dataclass(frozen=True)
class KeyTransport:
    """A key-transport recipient info, with what decryption compares byte for byte."""

    info: cms.KeyTransRecipientInfo
    # RSAES-OAEP SHA-256 exactly (check_key_encryption refuses the recipient used otherwise)
    oaep_sha256: bool


@dataclass(frozen=True)
class BatchEntry:
    """The `kekri` recipient info: the content key wrapped with the batch key, and the batch
    key's own record (a SET OF key-transport recipient infos, one per certificate)."""

    batch_id: bytes
    step: int  # the file's position in the batch: its key-wrapping key is the step-th ratchet
    record: bytes  # DER of the SET OF RecipientInfo holding the batch key (step 0)
    wrapped_key: bytes  # AES-256 key wrap (RFC 3394) of the content key

    def recipients(self, name: str) -> list[KeyTransport]:
        """The batch key's recipient infos, fully parsed (only on a batch-key cache miss)."""
        r = der.Reader(io.BytesIO(self.record), len(self.record), name)
        try:
            infos = cms.RecipientInfos.load(self.record, strict=True)
            if any(info.name != "ktri" for info in infos):
                raise r.broken("a batch-key recipient is not a key-transport recipient")
            return [_key_transport(info.chosen, r) for info in infos]
        except ASN1_ERRORS as error:
            raise r.broken(f"batch-key recipients do not parse: {error}") from None


@dataclass(frozen=True)
class Envelope:
    """The parsed structure of an encrypted file; the content stays on disk."""

    recipients: list[KeyTransport]
    batch: BatchEntry | None  # the imgvault batch-key recipient info, if any
    file_info_recipient: FileInfoEntry | None  # the imgvault file-info record, if any
    others: bytes  # DER of every recipient info but the file-info record, in file order
    nonce: bytes
    segments: list[tuple[int, int]]  # (offset, length) of the ciphertext pieces
    auth_attrs: bytes  # [1] IMPLICIT encoding as found, b"" if absent (imgvault writes none)
    tag: bytes

    @property
    def content_length(self) -> int:
        return sum(length for _, length in self.segments)

    @property
    def unverified_file_info(self) -> FileInfo | None:
        """The recorded facts, for display only: `verified_file_info` checks them."""
        if self.file_info_recipient is None:
            return None
        return self.file_info_recipient.info

    def verified_file_info(self, content_key: Secret, name: str) -> FileInfo | None:
        entry = self.file_info_recipient
        if entry is None:
            return None
        bound = self.others if entry.info.version >= 2 else b""
        if not hmac.compare_digest(_file_info_mac(content_key, entry.info_der, bound), entry.mac):
            raise AuthenticationError(
                f"{name}: authentication failed: the recorded file facts or recipient infos "
                "were altered",
                "no plaintext was kept; restore the file from a backup or replica, or recover "
                "its content with openssl cms -decrypt (docs/filecrypt-format.md)",
            )
        return entry.info


def _content_segments(r: der.Reader, limit: int) -> list[tuple[int, int]]:
    """The [0] encryptedContent: one primitive string, or chunks (BER, as OpenSSL streams)."""
    h = r.header(limit)
    if h.tag == der.CONTEXT_0_PRIMITIVE:
        r.f.seek(h.end)
        return [(h.content_offset, h.end - h.content_offset)]
    if h.tag != der.CONTEXT_0_CONSTRUCTED:
        raise r.broken(f"expected the encrypted content at byte {h.offset}")
    segments: list[tuple[int, int]] = []
    while True:
        if h.length is not None and r.tell() == h.end:
            return segments
        if h.length is None and r.peek_tag() == der.END_OF_CONTENTS:
            r.end_of_contents(h)
            return segments
        chunk = r.expect(
            der.OCTET_STRING, "a content chunk", h.end if h.length is not None else limit
        )
        segments.append((chunk.content_offset, chunk.end - chunk.content_offset))
        r.f.seek(chunk.end)


def _check_algorithm(raw: bytes, r: der.Reader) -> bytes:
    """The nonce, after checking that the content cipher is AES-256-GCM with a 16-byte tag."""
    try:
        algorithm = cms.EncryptionAlgorithm.load(raw)
        oid = algorithm["algorithm"].dotted
        if oid != OID_AES256_GCM:
            raise UnsupportedError(
                f"{r.name}: content cipher {algorithm['algorithm'].native} is not supported",
                "imgvault reads AES-256-GCM only (openssl cms -encrypt -aes-256-gcm)",
            )
        params = GCMParameters.load(algorithm["parameters"].dump())
        nonce = bytes(params["aes_nonce"].native)
        icvlen = int(params["aes_icvlen"].native)
    except ASN1_ERRORS as error:
        raise r.broken(f"content algorithm does not parse: {error}") from None
    if len(nonce) != NONCE_BYTES or icvlen != TAG_BYTES:
        raise UnsupportedError(
            f"{r.name}: AES-GCM with a {len(nonce)}-byte nonce and {icvlen}-byte tag",
            "imgvault reads 12-byte nonces and 16-byte tags only",
        )
    return nonce


def _key_transport(ktri: cms.KeyTransRecipientInfo, r: der.Reader) -> KeyTransport:
    """Parse every field of `ktri` (asn1crypto parses lazily: damage must show here).

    The key-encryption algorithm is compared as found before anything parses it: after a full
    parse asn1crypto re-encodes it on every dump (slow). An encoding equal to one of ours is
    known to parse; any other is parsed fully and its re-encoding compared, as before.
    """
    rid = ktri["rid"].name
    want = "v2" if rid == "subject_key_identifier" else "v0"
    if ktri["version"].native != want:
        raise r.broken(f"recipient info version is not {want} for its identifier")
    algorithm = ktri["key_encryption_algorithm"]
    oaep_sha256 = bytes(algorithm.dump()) in _OAEP_SHA256_FORMS
    if not oaep_sha256:
        algorithm.native  # noqa: B018  # forces the full (lazy) parse, so damage shows here
        oaep_sha256 = bytes(algorithm.dump()) in _OAEP_SHA256_FORMS
    ktri["rid"].native  # noqa: B018  # the same full parse for the other fields
    ktri["encrypted_key"].native  # noqa: B018
    return KeyTransport(ktri, oaep_sha256)


def _batch_entry(kekri: cms.KEKRecipientInfo, r: der.Reader) -> BatchEntry:
    """The imgvault batch-key `kekri`, every field checked (any other `kekri` is refused)."""
    kekid = kekri["kekid"]
    other = kekid["other"]
    if kekri["version"].native != "v4" or kekid["date"].native is not None:
        raise r.broken("batch-key recipient info has the wrong version or a date")
    if not other or other["key_attr_id"].dotted != OID_BATCH_KEY:
        raise UnsupportedError(
            f"{r.name}: a key-encryption-key (kekri) recipient that imgvault did not write",
            "decrypt it with openssl cms -decrypt -secretkey, or with a certificate recipient",
        )
    identifier = bytes(kekid["key_identifier"].native)
    batch_id, step = identifier[:BATCH_ID_BYTES], int.from_bytes(identifier[BATCH_ID_BYTES:])
    record = bytes(other["key_attr"].dump())
    wrapped = bytes(kekri["encrypted_key"].native)
    if bytes(kekri["key_encryption_algorithm"].dump()) != AES256_WRAP_ALGORITHM:
        raise r.broken("batch-key recipient info is not AES-256 key wrap")
    if len(identifier) != BATCH_ID_BYTES + STEP_BYTES or len(wrapped) != WRAPPED_KEY_BYTES:
        raise r.broken("batch-key recipient info has a wrong identifier or key length")
    if step >= MAX_STEP:
        raise r.broken(f"batch-key step {step} is beyond {MAX_STEP}")
    if record[:1] != bytes((der.SET,)):
        raise r.broken("batch-key record is not a SET OF recipient infos")
    return BatchEntry(batch_id, step, record, wrapped)


@dataclass
class _Infos:
    ktris: list[KeyTransport]
    batch: BatchEntry | None = None
    file_info: FileInfoEntry | None = None


def _recipients(raw: bytes, r: der.Reader, size: int) -> tuple[_Infos, bytes]:
    """Key-transport recipients, the batch key and the file-info record, and the DER of every
    info but the file-info record (what its version-2 MAC covers). Any other kind is refused,
    so that damage to a recipient info cannot pass as "a recipient we do not use"."""
    found = _Infos([])
    others: list[bytes] = []
    try:
        for info in cms.RecipientInfos.load(raw, strict=True):
            if info.name == "ori" and info.chosen["ori_type"].dotted == OID_FILE_INFO:
                if found.file_info is not None:
                    raise r.broken("two file-info records")
                found.file_info = _file_info_entry(info)
                version = found.file_info.info.version
                if version not in READABLE_VERSIONS:
                    raise UnsupportedError(
                        f"{r.name}: format version {version} (this imgvault reads "
                        f"{', '.join(map(str, READABLE_VERSIONS))})",
                        "decrypt it with the imgvault that wrote it, or with openssl cms",
                    )
                if len(found.file_info.mac) != 32:
                    raise r.broken("file-info MAC is not 32 bytes")
                continue
            others.append(bytes(info.dump()))
            if info.name == "ktri":
                found.ktris.append(_key_transport(info.chosen, r))
            elif info.name == "kekri":
                if found.batch is not None:
                    raise r.broken("two batch-key recipient infos")
                found.batch = _batch_entry(info.chosen, r)
            else:
                raise UnsupportedError(
                    f"{r.name}: a recipient info of kind {info.name} is not supported",
                    "imgvault reads RSA key-transport (ktri) recipients only",
                )
    except ASN1_ERRORS as error:
        raise r.broken(f"recipient infos do not parse: {error}") from None
    if found.file_info is not None and found.file_info.info.size != size:
        raise r.broken("the recorded size differs from the content length")
    if found.batch is not None and (found.file_info is None or found.file_info.info.version < 2):
        # Only a version-2 MAC binds the kekri to the facts and the other infos (imgvault never
        # writes one without it).
        raise r.broken("a batch-key recipient info without a version-2 file-info record")
    return found, b"".join(others)


def parse(f: io.BufferedIOBase, size: int, name: str) -> Envelope:
    """Walk the structure of the encrypted file `f` (seekable, `size` bytes) without its content.

    Raises NotEncryptedError when the file does not even start like CMS AuthEnvelopedData, and
    MalformedError or UnsupportedError for a damaged or foreign one.
    """
    f.seek(0)
    r = der.Reader(f, size, name)
    try:
        # Lengths are checked only after the type is known, so that a truncated encrypted
        # file is reported as damaged, never taken for plaintext and encrypted again.
        outer = r.expect(der.SEQUENCE, "a SEQUENCE", limit=1 << 62)
        oid = r.expect(der.OID, "the content type", limit=1 << 62)
        if r.value(oid) != OID_AUTH_ENVELOPED_DATA_TLV:
            raise r.broken("content type is not AuthEnvelopedData")
    except MalformedError:
        raise NotEncryptedError(
            f"{name}: not an encrypted file (no CMS AuthEnvelopedData structure)",
            "encrypt it first: imgvaultctl file encrypt PATH --recipient CERT",
        ) from None
    if outer.length is not None and outer.end != size:
        raise r.broken(f"{size} bytes where its header says {outer.end}")
    explicit = r.expect(der.CONTEXT_0_CONSTRUCTED, "[0] content")
    aed = r.expect(der.SEQUENCE, "AuthEnvelopedData")
    aed_limit = aed.end if aed.length is not None else None
    version = r.expect(der.INTEGER, "the version", aed_limit)
    if r.value(version) != der.tlv(der.INTEGER, b"\0"):
        raise r.broken("AuthEnvelopedData version is not 0")
    ris = r.header(aed_limit)
    if ris.tag == der.CONTEXT_0_CONSTRUCTED:  # originatorInfo: certificates we do not need
        r.f.seek(ris.end)
        ris = r.header(aed_limit)
    if ris.tag != der.SET:
        raise r.broken(f"expected recipient infos at byte {ris.offset}")
    ris_raw = r.value(ris)
    eci = r.expect(der.SEQUENCE, "the encrypted content info", aed_limit)
    eci_limit = eci.end if eci.length is not None else aed_limit
    content_type = r.expect(der.OID, "the content type", eci_limit)
    if r.value(content_type) != OID_DATA_TLV:
        raise UnsupportedError(
            f"{name}: the encrypted content type is not id-data",
            "imgvault encrypts plain files only",
        )
    nonce = _check_algorithm(r.value(r.expect(der.SEQUENCE, "the algorithm", eci_limit)), r)
    segments = _content_segments(r, eci_limit or size)
    r.end_of_contents(eci)
    auth_attrs = b""
    h = r.header(aed_limit)
    if h.tag == der.CONTEXT_1_CONSTRUCTED:
        auth_attrs = r.value(h)
        h = r.header(aed_limit)
    if h.tag != der.OCTET_STRING or h.length != TAG_BYTES:
        raise r.broken(f"expected the 16-byte GCM tag at byte {h.offset}")
    tag = r.value(h)[h.size :]
    if r.peek_tag() == der.CONTEXT_2_CONSTRUCTED:
        r.f.seek(r.header(aed_limit).end)  # unauthAttrs: ignored, as RFC 5083 allows
    for container in (aed, explicit, outer):
        r.end_of_contents(container)
    if r.tell() != size:
        raise r.broken(f"{size - r.tell()} bytes of trailing data")
    infos, others = _recipients(ris_raw, r, sum(n for _, n in segments))
    return Envelope(
        infos.ktris, infos.batch, infos.file_info, others, nonce, segments, auth_attrs, tag
    )


def check_key_encryption(ktri: KeyTransport, name: str) -> None:
    """Exactly RSAES-OAEP with SHA-256 and MGF1-SHA-256 and no label."""
    if not ktri.oaep_sha256:
        raise UnsupportedError(
            f"{name}: the content key is wrapped with "
            f"{ktri.info['key_encryption_algorithm']['algorithm'].native}, not RSAES-OAEP with "
            "SHA-256 and MGF1-SHA-256",
            "re-encrypt with: openssl cms -encrypt -keyopt rsa_padding_mode:oaep "
            "-keyopt rsa_oaep_md:sha256",
        )
