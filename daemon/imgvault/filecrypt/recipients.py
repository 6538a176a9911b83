"""Recipient certificates and private keys: loading, the checks that make them usable, and
wrapping the content key with RSAES-OAEP (SHA-256, MGF1-SHA-256)."""

import datetime
import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import cms
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from imgvault.filecrypt import format as fmt
from imgvault.filecrypt.errors import (
    NoMatchingRecipientError,
    UnusableKeyError,
    WrongKeyError,
)
from imgvault.secret import Secret

MIN_BITS = 2048
MAX_BITS = 4096

OAEP = padding.OAEP(mgf=padding.MGF1(hashes.SHA256()), algorithm=hashes.SHA256(), label=None)


def key_id(public_key: rsa.RSAPublicKey) -> bytes:
    """RFC 5280 §4.2.1.2 method 1 (SHA-1 of the key bits): the id our certificates carry."""
    return x509.SubjectKeyIdentifier.from_public_key(public_key).digest


def certificate_key_id(cert: x509.Certificate) -> bytes:
    """The certificate's subjectKeyIdentifier, or the method-1 id if it has none."""
    try:
        return cert.extensions.get_extension_for_class(x509.SubjectKeyIdentifier).value.digest
    except x509.ExtensionNotFound:
        return key_id(rsa_public_key(cert, "certificate"))


def rsa_public_key(cert: x509.Certificate, name: str) -> rsa.RSAPublicKey:
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise UnusableKeyError(
            f"{name}: the certificate's key is not RSA",
            "imgvault encrypts to RSA keys of 2048 to 4096 bits",
        )
    return key


def fingerprint(cert: x509.Certificate) -> str:
    return cert.fingerprint(hashes.SHA256()).hex(":")


@dataclass(frozen=True)
class Recipient:
    """A certificate checked for use as a file-encryption recipient."""

    name: str
    cert: x509.Certificate

    @property
    def key_id(self) -> bytes:
        return certificate_key_id(self.cert)

    @functools.cached_property
    def _template(self) -> tuple[rsa.RSAPublicKey, bytes]:
        """The KeyTransRecipientInfo DER up to its encryptedKey, whose length is fixed (the
        modulus size): built once with asn1crypto, then reused for every file."""
        public_key = rsa_public_key(self.cert, self.name)
        size = (public_key.key_size + 7) // 8
        ktri = cms.KeyTransRecipientInfo(
            {
                "version": "v2",
                "rid": cms.RecipientIdentifier(name="subject_key_identifier", value=self.key_id),
                "key_encryption_algorithm": cms.KeyEncryptionAlgorithm.load(fmt.OAEP_SHA256),
                "encrypted_key": bytes(size),
            }
        )
        return public_key, bytes(ktri.dump())[:-size]

    def wrap(self, content_key: Secret) -> bytes:
        """DER of the RecipientInfo (ktri) holding `content_key` for this certificate."""
        public_key, prefix = self._template
        return prefix + public_key.encrypt(content_key.reveal(), OAEP)


def load_certificate(path: Path) -> x509.Certificate:
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnusableKeyError(
            f"{path}: cannot read the certificate: {error.strerror}",
            "give a PEM or DER X.509 certificate file, or a key name from `imgvaultctl key list`",
        ) from None
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise UnusableKeyError(
            f"{path}: not an X.509 certificate",
            "give a PEM or DER certificate (openssl x509 -in FILE -noout -text shows it)",
        ) from None


def check_recipient(
    cert: x509.Certificate, name: str, now: datetime.datetime | None = None
) -> Recipient:
    """Refuse what would make files unreadable or weak: non-RSA, too small or large, expired,
    not yet valid, or a key usage that forbids key encipherment."""
    key = rsa_public_key(cert, name)
    if not MIN_BITS <= key.key_size <= MAX_BITS:
        raise UnusableKeyError(
            f"{name}: RSA key of {key.key_size} bits",
            f"use an RSA key of {MIN_BITS} to {MAX_BITS} bits (imgvaultctl key create NAME)",
        )
    moment = now or datetime.datetime.now(datetime.UTC)
    if moment > cert.not_valid_after_utc:
        raise UnusableKeyError(
            f"{name}: the certificate expired on {cert.not_valid_after_utc:%Y-%m-%d}",
            "create or import a new key and rewrap: imgvaultctl file rewrap",
        )
    if moment < cert.not_valid_before_utc:
        raise UnusableKeyError(
            f"{name}: the certificate is valid only from {cert.not_valid_before_utc:%Y-%m-%d}",
            "check the clock of this host, or the certificate",
        )
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        usage = None
    if usage is not None and not usage.key_encipherment:
        raise UnusableKeyError(
            f"{name}: the certificate does not allow key encipherment",
            "ask the PKI for a certificate with keyUsage keyEncipherment",
        )
    return Recipient(name, cert)


def load_private_key(path: Path, passphrase: Callable[[], Secret]) -> rsa.RSAPrivateKey:
    """A PEM/DER private key; `passphrase` is asked for only when the key is encrypted."""
    try:
        data = path.read_bytes()
    except OSError as error:
        raise UnusableKeyError(
            f"{path}: cannot read the private key: {error.strerror}",
            "give a PEM private key file or a key name from `imgvaultctl key list`",
        ) from None
    load = (
        serialization.load_pem_private_key
        if b"-----BEGIN" in data
        else serialization.load_der_private_key
    )
    try:
        try:
            key = load(data, password=None)
        except TypeError:  # encrypted
            secret = passphrase()
            try:
                key = load(data, password=secret.reveal())
            finally:
                secret.wipe()
    except ValueError:
        raise WrongKeyError(
            f"{path}: cannot load the private key (wrong passphrase, or not a key)",
            "check the passphrase; openssl pkey -in FILE -noout tests the file",
        ) from None
    except UnsupportedAlgorithm:
        raise UnusableKeyError(f"{path}: unsupported private key format", "use PKCS#8") from None
    if not isinstance(key, rsa.RSAPrivateKey):
        raise UnusableKeyError(f"{path}: not an RSA private key", "use the store's RSA key")
    return key


def matching_key_transport(
    ktris: list[fmt.KeyTransport], key: rsa.RSAPrivateKey, cert: x509.Certificate | None
) -> fmt.KeyTransport | None:
    """The recipient info that names `key` (by key id, or issuer/serial of `cert`)."""
    ids = {key_id(key.public_key())}
    issuer_serial = None
    if cert is not None:
        ids.add(certificate_key_id(cert))
        issuer_serial = (cert.issuer.public_bytes(), cert.serial_number)
    for ktri in ktris:
        rid = ktri.info["rid"]
        if rid.name == "subject_key_identifier":
            if bytes(rid.chosen.native) in ids:
                return ktri
        else:
            chosen = rid.chosen
            if issuer_serial == (chosen["issuer"].dump(), chosen["serial_number"].native):
                return ktri
    return None


def unwrap_key_transport(
    ktri: fmt.KeyTransport, key: rsa.RSAPrivateKey, name: str, what: str = "content key"
) -> Secret:
    """The 256-bit key (`what`: content key or batch key) that `ktri` holds for `key`."""
    fmt.check_key_encryption(ktri, name)
    try:
        unwrapped = key.decrypt(bytes(ktri.info["encrypted_key"].native), OAEP)
    except ValueError:
        raise WrongKeyError(
            f"{name}: the key matches a recipient but cannot unwrap the {what}",
            "the recipient info is damaged, or the key is not the one it names",
        ) from None
    if len(unwrapped) != fmt.KEY_BYTES:
        raise WrongKeyError(f"{name}: unwrapped a {len(unwrapped)}-byte {what}")
    return Secret(unwrapped)


def unwrap(
    ktris: list[fmt.KeyTransport],
    key: rsa.RSAPrivateKey,
    name: str,
    cert: x509.Certificate | None = None,
) -> Secret:
    """The content key, from the recipient info that names `key`."""
    ktri = matching_key_transport(ktris, key, cert)
    if ktri is None:
        listed = ", ".join(describe_rid(k.info) for k in ktris) or "none"
        raise NoMatchingRecipientError(
            f"{name}: the key is not a recipient of this file (recipients: {listed})",
            "use a key listed by `imgvaultctl file inspect`, e.g. the store's recovery key",
        )
    return unwrap_key_transport(ktri, key, name)


def describe_rid(ktri: cms.KeyTransRecipientInfo) -> str:
    rid = ktri["rid"]
    if rid.name == "subject_key_identifier":
        return "keyid " + bytes(rid.chosen.native).hex(":")
    return f"serial {rid.chosen['serial_number'].native}"
