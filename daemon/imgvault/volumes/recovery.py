"""Recovery keys: a generated high-entropy passphrase in its own keyslot, for when every admin
passphrase is lost.

Format: 48 characters of Crockford's base32 alphabet (240 bits from the OS CSPRNG), written
as eight dash-separated groups of six, e.g. `7K3QX9-...`. Crockford's alphabet has no I, L, O
or U, so a key read aloud or copied from paper survives; `normalize()` accepts lower case,
spaces and missing dashes, and reads O as 0 and I/L as 1. The keyslot holds the canonical
grouped form, so `cryptsetup open` also accepts the key exactly as printed.

The key leaves imgvault in one of three ways: printed once, written to a new 0600 file, or
encrypted to a recipient's X.509 certificate as CMS EnvelopedData (RFC 5652; PEM,
`openssl cms -decrypt` reads it) so that only the holder of that private key can read it.
"""

import os
import secrets
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.serialization import Encoding, pkcs7

from imgvault.errors import ImgvaultError
from imgvault.secret import Secret

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
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        raise RecoveryKeyError(
            f"{path} already exists", "give a new file name; imgvault never overwrites keys"
        ) from None
    except OSError as error:
        raise RecoveryKeyError(
            f"cannot create {path}: {error.strerror}", "check the directory exists and is writable"
        ) from None
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


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


def load_certificate(path: Path) -> x509.Certificate:
    """An RSA recipient certificate (PEM or DER) to encrypt the recovery key to."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise RecoveryKeyError(
            f"cannot read certificate {path}: {error.strerror}", "check the path"
        ) from None
    try:
        cert = (
            x509.load_pem_x509_certificate(data)
            if b"-----BEGIN" in data
            else x509.load_der_x509_certificate(data)
        )
    except ValueError:
        raise RecoveryKeyError(
            f"{path} is not an X.509 certificate (PEM or DER)",
            "give the recipient's certificate, not its key or a CSR",
        ) from None
    if not isinstance(cert.public_key(), rsa.RSAPublicKey):
        raise RecoveryKeyError(
            f"the certificate {path} has a non-RSA key",
            "CMS key transport here needs an RSA recipient certificate",
        )
    return cert


def encrypt_to_certificate(key: Secret, cert: x509.Certificate, path: Path) -> None:
    """CMS EnvelopedData holding the key and a newline, PEM, in a new 0600 file. Content
    AES-256-CBC; key transport RSA PKCS#1 v1.5, the one cryptography's builder offers.
    `Binary` keeps the bytes as they are (no S/MIME text canonicalisation)."""
    envelope = (
        pkcs7.PKCS7EnvelopeBuilder()
        .set_data(key.reveal() + b"\n")
        .set_content_encryption_algorithm(algorithms.AES256)
        .add_recipient(cert)
        .encrypt(Encoding.PEM, [pkcs7.PKCS7Options.Binary])
    )
    _create_private(path, envelope)
