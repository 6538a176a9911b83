"""Recovery keys: a generated high-entropy passphrase in its own keyslot, for when every admin
passphrase is lost.

Format: 48 characters of Crockford's base32 alphabet (240 bits from the OS CSPRNG), written
as eight dash-separated groups of six, e.g. `7K3QX9-...`. Crockford's alphabet has no I, L, O
or U, so a key read aloud or copied from paper survives; `normalize()` accepts lower case,
spaces and missing dashes, and reads O as 0 and I/L as 1. The keyslot holds the canonical
grouped form, so `cryptsetup open` also accepts the key exactly as printed.

The key leaves imgvault in one of three ways: printed once, written to a new 0600 file, or
encrypted to a recipient's X.509 certificate in the format of encrypted images (CMS
AuthEnvelopedData, RSA-OAEP; `openssl cms -decrypt` reads it) so that only the holder of that
private key can read it.
"""

import io
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from imgvault.errors import ImgvaultError
from imgvault.filecrypt import stream
from imgvault.filecrypt.format import FileInfo
from imgvault.filecrypt.recipients import Recipient, check_recipient, load_certificate
from imgvault.secret import Secret
from imgvault.system.atomic import write_new

ALPHABET = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ"
GROUPS = 8
GROUP_LENGTH = 6
_READ_AS = {ord("O"): ord("0"), ord("I"): ord("1"), ord("L"): ord("1")}


class RecoveryKeyError(ImgvaultError):
    pass


def generate() -> Secret:
    """A new recovery key in canonical grouped form."""
    raw = bytearray(ALPHABET[secrets.randbelow(32)] for _ in range(GROUPS * GROUP_LENGTH))
    try:
        return _grouped(raw)
    finally:
        raw[:] = bytes(len(raw))


def _grouped(raw: bytearray) -> Secret:
    out = bytearray()
    for start in range(0, len(raw), GROUP_LENGTH):
        if out:
            out += b"-"
        out += raw[start : start + GROUP_LENGTH]
    secret = Secret(out)
    out[:] = bytes(len(out))
    return secret


def normalize(typed: Secret) -> Secret:
    """The canonical form of a recovery key as typed or read from a file; the error never
    quotes the input."""
    raw = bytearray()
    for byte in typed.reveal().upper():
        if byte in b" \t\r\n-":
            continue
        raw.append(_READ_AS.get(byte, byte))
    try:
        if len(raw) != GROUPS * GROUP_LENGTH or any(b not in ALPHABET for b in raw):
            raise RecoveryKeyError(
                "this is not an imgvault recovery key (expected 8 groups of 6 letters and digits)",
                "type it as printed at 'volume format', e.g. XXXXXX-XXXXXX-...; a passphrase "
                "is given without --recovery-key",
            )
        return _grouped(raw)
    finally:
        raw[:] = bytes(len(raw))


def _create_private(path: Path, data: bytes) -> None:
    """Write `data` to a new file readable by its owner only; never replace an existing one."""
    try:
        write_new(path, data)
    except FileExistsError:
        raise RecoveryKeyError(
            f"{path} already exists", "give a new file name; imgvault never overwrites keys"
        ) from None
    except OSError as error:
        raise RecoveryKeyError(
            f"cannot create {path}: {error.strerror}", "check the directory exists and is writable"
        ) from None


def check_new_file(path: Path) -> None:
    """Fail before anything is formatted if the key could not be written to `path`."""
    if path.exists() or path.is_symlink():
        raise RecoveryKeyError(
            f"{path} already exists", "give a new file name; imgvault never overwrites keys"
        )
    if not path.parent.is_dir():
        raise RecoveryKeyError(
            f"directory {path.parent} does not exist", "create it (mode 0700) or pick another"
        )


def write_file(key: Secret, path: Path) -> None:
    """The key and a newline, in a new 0600 file."""
    _create_private(path, key.reveal() + b"\n")


def load_recipient(path: Path) -> Recipient:
    """The certificate to encrypt a recovery key to, checked as file-encryption recipients are
    (RSA 2048-4096, valid now, key encipherment allowed)."""
    return check_recipient(load_certificate(path), str(path))


def encrypt_to_certificate(key: Secret, recipient: Recipient, path: Path) -> None:
    """The key and a newline as a CMS AuthEnvelopedData file (DER, 0600), made by the file
    encryption engine: AES-256-GCM, RSA-OAEP-SHA256 key transport (docs/filecrypt-format.md).
    `openssl cms -decrypt -binary -inform DER` reads it, as it reads encrypted images."""
    plain = key.reveal() + b"\n"
    info = FileInfo(size=len(plain), mode=0o600, uid=0, gid=0, mtime_ns=time.time_ns())
    envelope = io.BytesIO()
    stream.encrypt(io.BytesIO(plain), envelope, info, [recipient])
    _create_private(path, envelope.getvalue())


@dataclass(frozen=True)
class RecoveryTarget:
    """Where a new recovery key goes: printed once (`show`), a new 0600 `file`, or a CMS
    envelope for `certificate` written to `path`."""

    kind: str = "show"
    path: Path | None = None
    certificate: Path | None = None

    def check(self) -> None:
        """Fail before any keyslot is written if the key could not be delivered."""
        if self.path is not None:
            check_new_file(self.path)
        if self.certificate is not None:
            load_recipient(self.certificate)

    def issue(self) -> Secret:
        """A new recovery key, already written to its file or envelope when there is one."""
        key = generate()
        if self.path is not None:
            if self.certificate is not None:
                encrypt_to_certificate(key, load_recipient(self.certificate), self.path)
            else:
                write_file(key, self.path)
        return key

    def discard(self, key: Secret) -> None:
        """Undo `issue` when the keyslot could not be made: that key opens nothing."""
        if self.path is not None:
            self.path.unlink(missing_ok=True)
        key.wipe()
