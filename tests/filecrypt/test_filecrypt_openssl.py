"""Interoperability with stock OpenSSL, by running its CLI both ways."""

import os
from pathlib import Path

import pytest
from fc_helpers import Party, decrypt_bytes, encrypt_bytes, make_party

from imgvault.filecrypt import inplace, stream
from imgvault.filecrypt.batch import Batches
from imgvault.filecrypt.errors import UnsupportedError
from imgvault.filecrypt.keystore import KeyStore
from imgvault.secret import Secret
from imgvault.system.run import SecretFd, run

OAEP = ["-keyopt", "rsa_padding_mode:oaep", "-keyopt", "rsa_oaep_md:sha256"]


def openssl_decrypt(enc: Path, party: Party, out: Path, *, recip: bool = True) -> bytes:
    argv = ["openssl", "cms", "-decrypt", "-binary", "-inform", "DER"]
    argv += ["-recip", str(party.cert_pem)] if recip else []
    run([*argv, "-inkey", str(party.key_pem), "-in", str(enc), "-out", str(out)], check=True)
    return out.read_bytes()


def openssl_encrypt(
    plain: Path, parties: list[Party], out: Path, extra: list[str] | None = None
) -> Path:
    argv = ["openssl", "cms", "-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER"]
    for party in parties:
        argv += ["-recip", str(party.cert_pem), *OAEP]
    run([*argv, *(extra or []), "-in", str(plain), "-out", str(out)], check=True)
    return out


@pytest.mark.parametrize("size", [0, 1, 100_000])
def test_openssl_decrypts_our_files(size: int, pki: dict[str, Party], tmp_path: Path) -> None:
    data = os.urandom(size)
    enc = encrypt_bytes(data, [pki["alice"].recipient, pki["bob"].recipient], tmp_path / "f")
    assert openssl_decrypt(enc, pki["alice"], tmp_path / "a") == data
    assert openssl_decrypt(enc, pki["bob"], tmp_path / "b", recip=False) == data


def test_openssl_decrypts_our_files_for_a_4096_bit_key(tmp_path: Path) -> None:
    party = make_party(tmp_path, "big", bits=4096)
    data = os.urandom(3000)
    enc = encrypt_bytes(data, [party.recipient], tmp_path / "f")
    assert openssl_decrypt(enc, party, tmp_path / "out") == data


@pytest.mark.parametrize(
    ("size", "extra"),
    [(0, []), (1, ["-keyid"]), (1024 * 1024 + 1, []), (70_000, ["-stream"])],
    ids=["empty", "keyid", "1MiB+1", "streamed-BER"],
)
def test_we_decrypt_openssl_files(
    size: int, extra: list[str], pki: dict[str, Party], tmp_path: Path
) -> None:
    data = os.urandom(size)
    plain = tmp_path / "plain"
    plain.write_bytes(data)
    enc = openssl_encrypt(plain, [pki["alice"], pki["bob"]], tmp_path / "enc", extra)
    assert decrypt_bytes(enc, pki["alice"]) == data
    assert decrypt_bytes(enc, pki["bob"]) == data


def test_rewrapped_file_decrypts_with_openssl(pki: dict[str, Party], tmp_path: Path) -> None:
    data = os.urandom(10_000)
    enc = encrypt_bytes(data, [pki["alice"].recipient], tmp_path / "f")
    out = tmp_path / "rewrapped"
    with enc.open("rb") as s, out.open("wb") as d:
        stream.rewrap(
            s, enc.stat().st_size, "f", pki["alice"].as_key, d,
            recipients=[pki["bob"].recipient], batches=Batches(),
        )  # fmt: skip
    assert inplace.inspect_file(out)[0].batch is not None  # a new batch key, as the CLI does
    assert openssl_decrypt(out, pki["bob"], tmp_path / "b") == data
    assert openssl_decrypt(out, pki["bob"], tmp_path / "c", recip=False) == data


def test_openssl_file_with_another_cipher_is_refused_clearly(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"x" * 100)
    enc = tmp_path / "enc"
    run(
        ["openssl", "cms", "-encrypt", "-binary", "-aes-128-gcm", "-outform", "DER",
         "-recip", str(pki["alice"].cert_pem), *OAEP, "-in", str(plain), "-out", str(enc)],
        check=True,
    )  # fmt: skip
    with pytest.raises(UnsupportedError, match="aes128_gcm is not supported"):
        decrypt_bytes(enc, pki["alice"])


def test_pkcs1_v15_key_transport_is_refused_clearly(pki: dict[str, Party], tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"x" * 100)
    enc = tmp_path / "enc"
    run(
        ["openssl", "cms", "-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER",
         "-recip", str(pki["alice"].cert_pem), "-in", str(plain), "-out", str(enc)],
        check=True,
    )  # fmt: skip
    with pytest.raises(UnsupportedError, match="not RSAES-OAEP") as caught:
        decrypt_bytes(enc, pki["alice"])
    assert "rsa_oaep_md:sha256" in caught.value.hint


def test_foreign_key_transport_is_refused_only_for_the_recipient_used(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    """alice's key is wrapped with OAEP-SHA-256, bob's with PKCS#1 v1.5 (-keyopt applies to
    the -recip before it): alice decrypts, bob is refused clearly."""
    plain = tmp_path / "plain"
    plain.write_bytes(b"y" * 100)
    enc = tmp_path / "enc"
    run(
        ["openssl", "cms", "-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER",
         "-recip", str(pki["alice"].cert_pem), *OAEP, "-recip", str(pki["bob"].cert_pem),
         "-in", str(plain), "-out", str(enc)],
        check=True,
    )  # fmt: skip
    assert decrypt_bytes(enc, pki["alice"]) == b"y" * 100
    with pytest.raises(UnsupportedError, match="not RSAES-OAEP"):
        decrypt_bytes(enc, pki["bob"])


def test_openssl_reads_our_stored_private_key_and_certificate(tmp_path: Path) -> None:
    store = KeyStore(tmp_path / "keys")
    store.create("svc", 2048, 30, lambda: Secret("correct horse"))
    secret = SecretFd(Secret("correct horse"))
    key_file = tmp_path / "keys" / "svc.key"
    result = run(
        ["openssl", "pkey", "-in", str(key_file), "-passin", f"file:{secret.open()}", "-noout"],
        fd_secrets=[secret],
    )
    assert result.ok, result.stderr
    structure = run(["openssl", "asn1parse", "-in", str(key_file)]).stdout
    assert "PBKDF2" in structure
    assert "hmacWithSHA256" in structure
    assert ":0927C0" in structure  # 600000 iterations
    text = run(["openssl", "x509", "-in", str(tmp_path / "keys" / "svc.crt"), "-noout", "-text"])
    assert "Key Encipherment" in text.stdout
    assert "Subject Key Identifier" in text.stdout
