"""Helpers of the file-encryption tests: test-only RSA keys and certificates on disk."""

from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from imgvault.filecrypt import format as fmt
from imgvault.filecrypt import stream
from imgvault.filecrypt.batch import Batches
from imgvault.filecrypt.keystore import self_signed_certificate
from imgvault.filecrypt.recipients import Recipient, check_recipient
from imgvault.filecrypt.stream import Key


@dataclass(frozen=True)
class Party:
    """A recipient: its key and certificate as objects and as unencrypted PEM files."""

    name: str
    key: rsa.RSAPrivateKey
    recipient: Recipient
    key_pem: Path
    cert_pem: Path

    @property
    def as_key(self) -> Key:
        return Key(self.key, self.recipient.cert)


def make_party(directory: Path, name: str, bits: int = 2048) -> Party:
    key = rsa.generate_private_key(public_exponent=65537, key_size=bits)
    cert = self_signed_certificate(key, name, 30)
    key_pem = directory / f"{name}.key.pem"
    cert_pem = directory / f"{name}.crt.pem"
    key_pem.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return Party(name, key, check_recipient(cert, name), key_pem, cert_pem)


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Party]:
    directory = tmp_path_factory.mktemp("pki")
    return {name: make_party(directory, name) for name in ("alice", "bob", "mallory")}


def encrypt_bytes(
    data: bytes, recipients: list[Recipient], path: Path, *, batch: bool = True
) -> Path:
    """Encrypt `data` to `path` with fixed, harmless file facts (and a batch key, as the CLI
    and the service write files, unless `batch` is False)."""
    src = path.with_suffix(".plain")
    src.write_bytes(data)
    info = fmt.FileInfo(size=len(data), mode=0o640, uid=1000, gid=1000, mtime_ns=1_700_000_000)
    with src.open("rb") as s, path.open("wb") as d:
        stream.encrypt(s, d, info, recipients, Batches() if batch else None)
    src.unlink()
    return path


def decrypt_bytes(path: Path, party: Party) -> bytes:
    out = path.with_suffix(".out")
    with path.open("rb") as s, out.open("wb") as d:
        stream.decrypt(s, path.stat().st_size, str(path), party.as_key, d)
    data = out.read_bytes()
    out.unlink()
    return data
