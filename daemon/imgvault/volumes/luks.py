"""Typed LUKS header metadata, parsed from cryptsetup's output.

LUKS2: the JSON area from `cryptsetup luksDump --dump-json-metadata`. The binary header fields
that JSON lacks (version, UUID, label, subsystem) come from `blkid -p`. LUKS1 has no JSON area;
its text luksDump is parsed instead.
"""

import re
from dataclasses import asdict, dataclass, field
from typing import Any

# LUKS2 keyslot priority (cryptsetup config --priority): absent means normal.
_PRIORITY_NAMES = {0: "ignore", 1: "normal", 2: "prefer"}


@dataclass(frozen=True)
class Pbkdf:
    """A key-derivation setting, as requested for a new keyslot or read from one.

    For argon2i/argon2id `iterations` is the time cost; `memory_kib` and `parallel` apply only
    to them. An unset `iterations` lets cryptsetup benchmark for `iter_time_ms` (its own default
    when unset); a set one skips the benchmark, which is for tests only.
    """

    kind: str = "argon2id"
    hash: str | None = None
    iterations: int | None = None
    memory_kib: int | None = None
    parallel: int | None = None
    iter_time_ms: int | None = None

    def cryptsetup_args(self) -> list[str]:
        args = ["--pbkdf", self.kind]
        if self.iterations is not None:
            args += ["--pbkdf-force-iterations", str(self.iterations)]
        elif self.iter_time_ms is not None:
            args += ["--iter-time", str(self.iter_time_ms)]
        if self.memory_kib is not None:
            args += ["--pbkdf-memory", str(self.memory_kib)]
        if self.parallel is not None:
            args += ["--pbkdf-parallel", str(self.parallel)]
        return args


@dataclass(frozen=True)
class Keyslot:
    id: int
    type: str
    key_bits: int
    priority: str
    pbkdf: Pbkdf | None
    area_cipher: str | None = None


@dataclass(frozen=True)
class Token:
    id: int
    type: str
    keyslots: tuple[int, ...]


@dataclass(frozen=True)
class Segment:
    id: int
    type: str
    offset: int
    size: int | None  # None: "dynamic", up to the end of the device
    cipher: str | None
    sector_size: int | None
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Reencryption:
    """An unfinished `cryptsetup reencrypt`, read from the header: resumable after a crash."""

    mode: str
    direction: str


@dataclass(frozen=True)
class LuksHeader:
    version: int
    uuid: str
    label: str | None
    subsystem: str | None
    cipher: str
    key_bits: int
    sector_size: int
    keyslots: tuple[Keyslot, ...]
    tokens: tuple[Token, ...] = ()
    segments: tuple[Segment, ...] = ()
    requirements: tuple[str, ...] = ()
    reencryption: Reencryption | None = None
    hash: str | None = field(default=None)

    @property
    def format_name(self) -> str:
        return f"LUKS{self.version}"

    @property
    def cipher_description(self) -> str:
        return describe_cipher(self.cipher, self.key_bits)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        document["format"] = self.format_name
        document["cipher_description"] = self.cipher_description
        return document


def describe_cipher(cipher: str, key_bits: int) -> str:
    """Spell a dm-crypt cipher for a human: XTS splits its key in two, so a 256-bit
    aes-xts-plain64 key is AES-128-XTS (the LUKS2 default of cryptsetup is 512 = AES-256)."""
    algorithm, _, rest = cipher.partition("-")
    mode = rest.split("-")[0] if rest else ""
    if mode == "xts":
        name = f"{algorithm.upper()}-{key_bits // 2}-XTS"
    elif mode:
        name = f"{algorithm.upper()}-{key_bits}-{mode.upper()}"
    else:
        name = f"{algorithm.upper()}-{key_bits}"
    return f"{cipher}, {key_bits}-bit key = {name}"


def _int_or_none(value: Any) -> int | None:
    return None if value in (None, "dynamic") else int(value)


def _parse_pbkdf(kdf: dict[str, Any] | None) -> Pbkdf | None:
    if not kdf:
        return None
    kind = kdf["type"]
    if kind == "pbkdf2":
        return Pbkdf(kind=kind, hash=kdf.get("hash"), iterations=kdf.get("iterations"))
    return Pbkdf(
        kind=kind,
        iterations=kdf.get("time"),
        memory_kib=kdf.get("memory"),
        parallel=kdf.get("cpus"),
    )


def parse_luks2(metadata: dict[str, Any], identity: dict[str, str]) -> LuksHeader:
    """Build a LuksHeader from the LUKS2 JSON area and blkid's VERSION/UUID/LABEL/SUBSYSTEM."""
    keyslots = tuple(
        Keyslot(
            id=int(slot_id),
            type=slot["type"],
            key_bits=int(slot["key_size"]) * 8,
            priority=_PRIORITY_NAMES.get(int(slot.get("priority", 1)), "normal"),
            pbkdf=_parse_pbkdf(slot.get("kdf")),
            area_cipher=slot.get("area", {}).get("encryption"),
        )
        for slot_id, slot in sorted(metadata["keyslots"].items(), key=lambda kv: int(kv[0]))
    )
    tokens = tuple(
        Token(id=int(tid), type=tok["type"], keyslots=tuple(int(k) for k in tok["keyslots"]))
        for tid, tok in sorted(metadata.get("tokens", {}).items(), key=lambda kv: int(kv[0]))
    )
    segments = tuple(
        Segment(
            id=int(sid),
            type=seg["type"],
            offset=int(seg["offset"]),
            size=_int_or_none(seg["size"]),
            cipher=seg.get("encryption"),
            sector_size=seg.get("sector_size"),
            flags=tuple(seg.get("flags", ())),
        )
        for sid, seg in sorted(metadata["segments"].items(), key=lambda kv: int(kv[0]))
    )
    # The data key is the one whose digest covers the first segment; its keyslots give its size.
    first_segment = str(segments[0].id) if segments else "0"
    key_bits, digest_hash = 0, None
    for digest in metadata.get("digests", {}).values():
        if first_segment in digest.get("segments", ()) and digest.get("keyslots"):
            slot = metadata["keyslots"][digest["keyslots"][0]]
            key_bits, digest_hash = int(slot["key_size"]) * 8, digest.get("hash")
            break
    crypt_segment = next((s for s in segments if s.type == "crypt"), None)
    reencrypt_slot = next(
        (slot for slot in metadata["keyslots"].values() if slot["type"] == "reencrypt"), None
    )
    requirements = tuple(metadata.get("config", {}).get("requirements", {}).get("mandatory", ()))
    return LuksHeader(
        version=2,
        uuid=identity.get("UUID", ""),
        label=identity.get("LABEL") or None,
        subsystem=identity.get("SUBSYSTEM") or None,
        cipher=crypt_segment.cipher if crypt_segment and crypt_segment.cipher else "",
        key_bits=key_bits,
        sector_size=(crypt_segment.sector_size or 512) if crypt_segment else 512,
        keyslots=keyslots,
        tokens=tokens,
        segments=segments,
        requirements=requirements,
        reencryption=(
            Reencryption(mode=reencrypt_slot["mode"], direction=reencrypt_slot["direction"])
            if reencrypt_slot
            else None
        ),
        hash=digest_hash,
    )


_LUKS1_FIELD = re.compile(r"^([A-Za-z ]+):\s*(.*)$")
_LUKS1_SLOT = re.compile(r"^Key Slot (\d+): (ENABLED|DISABLED)$")


def parse_luks1(dump: str, identity: dict[str, str]) -> LuksHeader:
    """Build a LuksHeader from LUKS1 `cryptsetup luksDump` text (LUKS1 has no JSON area)."""
    fields: dict[str, str] = {}
    keyslots: list[Keyslot] = []
    current_slot: int | None = None
    for raw_line in dump.splitlines():
        line = raw_line.strip()
        slot_match = _LUKS1_SLOT.match(line)
        if slot_match:
            current_slot = int(slot_match.group(1)) if slot_match.group(2) == "ENABLED" else None
            continue
        field_match = _LUKS1_FIELD.match(line)
        if not field_match:
            continue
        name, value = field_match.group(1).strip(), field_match.group(2).strip()
        if current_slot is not None and name == "Iterations":
            keyslots.append(
                Keyslot(
                    id=current_slot,
                    type="luks1",
                    key_bits=int(fields["MK bits"]),
                    priority="normal",
                    pbkdf=Pbkdf(kind="pbkdf2", hash=fields.get("Hash spec"), iterations=int(value)),
                )
            )
        elif current_slot is None:
            fields.setdefault(name, value)
    return LuksHeader(
        version=1,
        uuid=identity.get("UUID") or fields.get("UUID", ""),
        label=None,
        subsystem=None,
        cipher=f"{fields['Cipher name']}-{fields['Cipher mode']}",
        key_bits=int(fields["MK bits"]),
        sector_size=512,
        keyslots=tuple(keyslots),
        hash=fields.get("Hash spec"),
    )
