"""Certificates and keys that would make files unreadable or weak are refused clearly."""

import datetime
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from fc_helpers import Party

from imgvault.filecrypt.errors import UnusableKeyError, WrongKeyError
from imgvault.filecrypt.keystore import self_signed_certificate
from imgvault.filecrypt.recipients import check_recipient, load_certificate, load_private_key
from imgvault.secret import Secret

NOW = datetime.datetime.now(datetime.UTC)


def _cert(
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey,
    *,
    start: datetime.datetime = NOW - datetime.timedelta(days=1),
    end: datetime.datetime = NOW + datetime.timedelta(days=1),
    usage: x509.KeyUsage | None = None,
) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "pki")])
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(start)
        .not_valid_after(end)
    )
    if usage is not None:
        builder = builder.add_extension(usage, critical=True)
    return builder.sign(key, hashes.SHA256())


def _usage(*, key_encipherment: bool) -> x509.KeyUsage:
    return x509.KeyUsage(
        digital_signature=True, content_commitment=False, key_encipherment=key_encipherment,
        data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
        encipher_only=False, decipher_only=False,
    )  # fmt: skip


def test_expired_certificate(pki: dict[str, Party]) -> None:
    cert = _cert(pki["alice"].key, end=NOW - datetime.timedelta(days=1))
    with pytest.raises(UnusableKeyError, match="expired") as caught:
        check_recipient(cert, "old")
    assert "rewrap" in caught.value.hint


def test_not_yet_valid_certificate(pki: dict[str, Party]) -> None:
    later = NOW + datetime.timedelta(days=2)
    cert = _cert(pki["alice"].key, start=later, end=later + datetime.timedelta(days=1))
    with pytest.raises(UnusableKeyError, match="valid only from"):
        check_recipient(cert, "future")


def test_certificate_without_key_encipherment(pki: dict[str, Party]) -> None:
    cert = _cert(pki["alice"].key, usage=_usage(key_encipherment=False))
    with pytest.raises(UnusableKeyError, match="does not allow key encipherment"):
        check_recipient(cert, "signing-only")
    check_recipient(_cert(pki["alice"].key, usage=_usage(key_encipherment=True)), "ok")


def test_small_rsa_and_non_rsa_keys() -> None:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024)  # noqa: S505  # refused: the point
    with pytest.raises(UnusableKeyError, match="RSA key of 1024 bits"):
        check_recipient(_cert(small), "small")
    with pytest.raises(UnusableKeyError, match="not RSA"):
        check_recipient(_cert(ec.generate_private_key(ec.SECP256R1())), "ec")


def test_certificate_without_subject_key_identifier_gets_the_method_1_id(
    pki: dict[str, Party],
) -> None:
    recipient = check_recipient(_cert(pki["alice"].key), "no-ski")
    own = self_signed_certificate(pki["alice"].key, "with-ski", 1)
    assert recipient.key_id == check_recipient(own, "with-ski").key_id


def test_files_that_are_not_certificates_or_keys(tmp_path: Path) -> None:
    junk = tmp_path / "junk.pem"
    junk.write_bytes(b"-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    with pytest.raises(UnusableKeyError, match=r"not an X\.509 certificate"):
        load_certificate(junk)
    with pytest.raises(UnusableKeyError, match="cannot read the certificate"):
        load_certificate(tmp_path / "missing.pem")
    with pytest.raises(WrongKeyError, match="cannot load the private key"):
        load_private_key(junk, lambda: Secret("x"))


def test_encrypted_key_with_wrong_passphrase(tmp_path: Path) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    path = tmp_path / "k.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"right"),
        )
    )
    with pytest.raises(WrongKeyError, match="wrong passphrase") as caught:
        load_private_key(path, lambda: Secret("Tr0ub4dor&3"))
    assert "Tr0ub4dor" not in str(caught.value)
    assert load_private_key(path, lambda: Secret("right")).key_size == 2048
