"""The host's key store: recipient certificates and (optionally) their private keys.

Layout of the directory (default `state_dir()/keys`, mode 0700): `NAME.crt` (PEM certificate)
and `NAME.key` (PEM PKCS#8 EncryptedPrivateKeyInfo, mode 0600). Encryption needs only the
certificates; the private key of an offline recovery key is usually not on the host at all.
"""

import base64
import datetime
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import algos, keys
from cryptography import x509
from cryptography.hazmat.primitives import hashes, padding, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from cryptography.x509.oid import NameOID

from imgvault.filecrypt.errors import FilecryptError, UnusableKeyError
from imgvault.filecrypt.recipients import (
    MAX_BITS,
    MIN_BITS,
    Recipient,
    check_recipient,
    fingerprint,
    load_certificate,
    load_private_key,
    rsa_public_key,
)
from imgvault.filecrypt.stream import Key
from imgvault.paths import state_dir
from imgvault.secret import Secret
from imgvault.system.atomic import write_new

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
# PBKDF2-HMAC-SHA256 rounds protecting stored private keys (OWASP 2023 figure).
# cryptography's BestAvailableEncryption uses 2048 for PKCS#8, too few for a key at rest.
PBKDF2_ROUNDS = 600_000
PEM_LABEL = "ENCRYPTED PRIVATE KEY"


def default_dir() -> Path:
    return state_dir() / "keys"


@dataclass(frozen=True)
class KeyEntry:
    name: str
    cert: x509.Certificate
    has_private_key: bool

    @property
    def bits(self) -> int:
        return rsa_public_key(self.cert, self.name).key_size

    def to_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "subject": self.cert.subject.rfc4514_string(),
            "fingerprint_sha256": fingerprint(self.cert),
            "bits": self.bits,
            "not_before": self.cert.not_valid_before_utc.isoformat(),
            "not_after": self.cert.not_valid_after_utc.isoformat(),
            "has_private_key": self.has_private_key,
        }


class KeyStore:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_dir()

    def _paths(self, name: str) -> tuple[Path, Path]:
        if not NAME.fullmatch(name):
            raise FilecryptError(
                f"invalid key name {name!r}",
                "use letters, digits, '.', '_' and '-' (at most 64, not starting with . - _)",
            )
        return self.directory / f"{name}.crt", self.directory / f"{name}.key"

    def _prepare(self, name: str) -> tuple[Path, Path]:
        cert_path, key_path = self._paths(name)
        if cert_path.exists():
            raise FilecryptError(
                f"key {name!r} already exists in {self.directory}",
                "choose another name; `imgvaultctl key list` shows the existing ones",
            )
        self.directory.mkdir(mode=0o700, parents=True, exist_ok=True)
        return cert_path, key_path

    def create(self, name: str, bits: int, days: int, passphrase: Callable[[], Secret]) -> KeyEntry:
        """A new RSA key and a self-signed certificate for key encipherment.

        The passphrase is asked for only once the arguments are known to be good."""
        if not MIN_BITS <= bits <= MAX_BITS:
            raise UnusableKeyError(
                f"--bits {bits}: RSA keys must have {MIN_BITS} to {MAX_BITS} bits",
                "use --bits 4096 (default) or 3072",
            )
        if days < 1:
            raise FilecryptError(f"--days {days}: must be at least 1", "e.g. --days 1825")
        cert_path, key_path = self._prepare(name)
        secret = passphrase()
        key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
        cert = self_signed_certificate(key, name, days)
        try:
            write_new(key_path, encrypt_pkcs8(key, secret), mode=0o600)
        finally:
            secret.wipe()
        write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return KeyEntry(name, cert, True)

    def import_(
        self,
        name: str,
        cert_file: Path,
        key_file: Path | None,
        key_passphrase: Callable[[], Secret],
        store_passphrase: Callable[[], Secret],
    ) -> KeyEntry:
        """Import a PKI certificate, and optionally its private key (stored re-encrypted)."""
        cert = load_certificate(cert_file)
        check_recipient(cert, str(cert_file))
        key = None
        if key_file is not None:
            key = load_private_key(key_file, key_passphrase)
            if key.public_key().public_numbers() != rsa_public_key(cert, name).public_numbers():
                raise UnusableKeyError(
                    f"{key_file}: the private key does not belong to {cert_file}",
                    "give the key that was issued with this certificate",
                )
        cert_path, key_path = self._prepare(name)
        if key is not None:
            secret = store_passphrase()
            try:
                write_new(key_path, encrypt_pkcs8(key, secret), mode=0o600)
            finally:
                secret.wipe()
        write_new(cert_path, cert.public_bytes(serialization.Encoding.PEM), mode=0o644)
        return KeyEntry(name, cert, key is not None)

    def entries(self) -> list[KeyEntry]:
        if not self.directory.is_dir():
            return []
        found = []
        for cert_path in sorted(self.directory.glob("*.crt")):
            name = cert_path.stem
            found.append(
                KeyEntry(name, load_certificate(cert_path), cert_path.with_suffix(".key").exists())
            )
        return found

    def certificate(self, name: str) -> x509.Certificate:
        cert_path, _ = self._paths(name)
        if not cert_path.exists():
            raise FilecryptError(
                f"no key named {name!r} in {self.directory}",
                "`imgvaultctl key list` shows the keys; give a certificate file path instead",
            )
        return load_certificate(cert_path)

    def recipient(self, name_or_path: str) -> Recipient:
        """A key-store name, or a certificate file (anything containing '/' or a suffix)."""
        if _is_path(name_or_path):
            path = Path(name_or_path)
            return check_recipient(load_certificate(path), str(path))
        return check_recipient(self.certificate(name_or_path), name_or_path)

    def key(self, name_or_path: str, passphrase: Callable[[], Secret]) -> Key:
        """A key-store name (private key and certificate), or a private key file."""
        if _is_path(name_or_path):
            return Key(load_private_key(Path(name_or_path), passphrase))
        cert = self.certificate(name_or_path)
        _, key_path = self._paths(name_or_path)
        if not key_path.exists():
            raise FilecryptError(
                f"key {name_or_path!r} has no private key on this host (certificate only)",
                "give the private key file: --key /path/to/key.pem (e.g. the recovery key)",
            )
        return Key(load_private_key(key_path, passphrase), cert)


def _is_path(name_or_path: str) -> bool:
    return "/" in name_or_path or name_or_path.endswith((".pem", ".crt", ".der", ".key"))


def self_signed_certificate(key: rsa.RSAPrivateKey, name: str, days: int) -> x509.Certificate:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "imgvault file encryption"),
        ]
    )
    now = datetime.datetime.now(datetime.UTC).replace(microsecond=0)
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=True,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def encrypt_pkcs8(key: rsa.RSAPrivateKey, passphrase: Secret) -> bytes:
    """PEM PKCS#8 with PBES2 (PBKDF2-HMAC-SHA256, PBKDF2_ROUNDS; AES-256-CBC).

    Hand-built with asn1crypto because cryptography's PKCS#8 encryption has a fixed, low
    iteration count; OpenSSL and cryptography read the result (tests prove both).
    """
    if not passphrase:
        raise FilecryptError("empty passphrase", "a stored private key needs a passphrase")
    plain = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    salt, iv = os.urandom(16), os.urandom(16)
    kek = PBKDF2HMAC(hashes.SHA256(), 32, salt, PBKDF2_ROUNDS).derive(passphrase.reveal())
    padder = padding.PKCS7(128).padder()
    encryptor = Cipher(algorithms.AES(kek), modes.CBC(iv)).encryptor()
    body = encryptor.update(padder.update(plain) + padder.finalize()) + encryptor.finalize()
    info = keys.EncryptedPrivateKeyInfo(
        {
            "encryption_algorithm": algos.EncryptionAlgorithm(
                {
                    "algorithm": "pbes2",
                    "parameters": algos.Pbes2Params(
                        {
                            "key_derivation_func": {
                                "algorithm": "pbkdf2",
                                "parameters": {
                                    "salt": algos.Pbkdf2Salt(name="specified", value=salt),
                                    "iteration_count": PBKDF2_ROUNDS,
                                    "prf": {"algorithm": "sha256"},
                                },
                            },
                            "encryption_scheme": {"algorithm": "aes256_cbc", "parameters": iv},
                        }
                    ),
                }
            ),
            "encrypted_data": body,
        }
    )
    return _pem(bytes(info.dump()))


def _pem(der_bytes: bytes) -> bytes:
    text = base64.encodebytes(der_bytes).decode().replace("\n", "")
    lines = [text[i : i + 64] for i in range(0, len(text), 64)]
    return (
        "\n".join([f"-----BEGIN {PEM_LABEL}-----", *lines, f"-----END {PEM_LABEL}-----"]) + "\n"
    ).encode()
