"""Batch keys: one RSA private-key operation per batch of files, the files still standing alone
(OpenSSL decrypts each with its own RSA recipient info), and no part of them alterable."""

import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest
from asn1crypto import cms, core
from cryptography.hazmat.primitives import keywrap
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from fc_helpers import Party, decrypt_bytes, encrypt_bytes
from test_filecrypt_openssl import openssl_decrypt, openssl_encrypt

from imgvault.filecrypt import format as fmt
from imgvault.filecrypt import inplace, stream
from imgvault.filecrypt.batch import MAX_FILES, Batches, BatchKey, _Ratchet, next_step
from imgvault.filecrypt.errors import AuthenticationError, MalformedError, UnsupportedError
from imgvault.filecrypt.recipients import Recipient
from imgvault.filecrypt.stream import Key
from imgvault.secret import Secret


class CountingKey:
    """An RSA private key that counts its private-key operations."""

    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.key = key
        self.operations = 0

    def decrypt(self, ciphertext: bytes, padding: object) -> bytes:
        self.operations += 1
        return self.key.decrypt(ciphertext, padding)  # type: ignore[arg-type]

    def public_key(self) -> rsa.RSAPublicKey:
        return self.key.public_key()


def encrypt_files(
    directory: Path, count: int, recipients: list[Recipient], batches: Batches | None
) -> dict[Path, bytes]:
    directory.mkdir(exist_ok=True)
    files = {directory / f"{n}.dcm": os.urandom(1000 + n) for n in range(count)}
    for path, data in files.items():
        path.write_bytes(data)
        inplace.encrypt_file(path, recipients, batches=batches)
    return files


def batch_record(path: Path) -> bytes | None:
    env = inplace.inspect_file(path)[0]
    return None if env.batch is None else env.batch.record


def _crafted(
    path: Path, infos_for: Callable[[Secret, Secret], list[bytes]], facts: bool = True
) -> Path:
    """A file whose content is under key one, with the recipient infos `infos_for(one, two)`
    plus (if `facts`) a version-2 file-info record MACed under key one."""
    one, two = Secret(os.urandom(fmt.KEY_BYTES)), Secret(os.urandom(fmt.KEY_BYTES))
    infos = infos_for(one, two)
    if facts:
        info = fmt.FileInfo(size=3, mode=0o600, uid=0, gid=0, mtime_ns=0)
        infos.append(fmt.file_info_recipient(info, one, infos))
    nonce = os.urandom(fmt.NONCE_BYTES)
    sealed = AESGCM(one.reveal()).encrypt(nonce, b"abc", None)
    prefix, suffix = fmt.frame(infos, nonce, 3, b"")
    path.write_bytes(prefix + sealed[:-16] + suffix + sealed[-16:])
    return path


def test_a_batch_of_files_needs_one_rsa_operation_to_decrypt(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    recipients = [pki["alice"].recipient, pki["bob"].recipient]
    files = encrypt_files(tmp_path / "store", 20, recipients, Batches())
    assert len({batch_record(p) for p in files}) == 1
    counting = CountingKey(pki["bob"].key)
    key = Key(counting, pki["bob"].recipient.cert)  # type: ignore[arg-type]
    for _path, _, error in inplace.run_batch(
        list(files), lambda p, d: inplace.decrypt_file(p, key, dirs_to_sync=d), jobs=4
    ):
        assert error is None, error
    assert counting.operations == 1
    assert all(path.read_bytes() == data for path, data in files.items())


def test_without_a_batch_key_every_file_costs_an_rsa_operation(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    files = encrypt_files(tmp_path / "store", 5, [pki["alice"].recipient], None)
    assert {batch_record(p) for p in files} == {None}
    counting = CountingKey(pki["alice"].key)
    key = Key(counting, pki["alice"].recipient.cert)  # type: ignore[arg-type]
    for path in files:
        inplace.decrypt_file(path, key)
    assert counting.operations == 5


def test_batches_are_renewed_by_count_age_and_recipients(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    alice, bob = pki["alice"].recipient, pki["bob"].recipient
    by_count = encrypt_files(tmp_path / "count", 5, [alice], Batches(max_files=2))
    assert len({batch_record(p) for p in by_count}) == 3
    by_age = encrypt_files(tmp_path / "age", 3, [alice], Batches(max_seconds=0))
    assert len({batch_record(p) for p in by_age}) == 3
    batches = Batches()
    first = encrypt_files(tmp_path / "a", 2, [alice], batches)
    second = encrypt_files(tmp_path / "b", 2, [alice, bob], batches)
    assert len({batch_record(p) for p in first}) == 1
    assert len({batch_record(p) for p in [*first, *second]}) == 2
    for path, data in second.items():  # bob is a recipient of the second batch key only
        assert decrypt_bytes(path, pki["bob"]) == data


def test_openssl_decrypts_batch_files_with_each_recipient(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    data = os.urandom(5000)
    enc = encrypt_bytes(data, [pki["alice"].recipient, pki["bob"].recipient], tmp_path / "f")
    assert inplace.inspect_file(enc)[0].batch is not None
    assert openssl_decrypt(enc, pki["alice"], tmp_path / "a") == data
    assert openssl_decrypt(enc, pki["bob"], tmp_path / "b", recip=False) == data


def test_a_key_outside_the_batch_falls_back_to_its_own_recipient_info(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    """Not something imgvault writes (the batch key has the file's recipients), but what a
    reader must do with such a file: use the file's ktri, which the MAC binds all the same."""
    alice, bob = pki["alice"].recipient, pki["bob"].recipient
    enc = _crafted(tmp_path / "f", lambda one, _: [bob.wrap(one), BatchKey([alice]).wrap(one)])
    assert decrypt_bytes(enc, pki["bob"]) == b"abc"
    assert decrypt_bytes(enc, pki["alice"]) == b"abc"


def test_a_batch_record_swapped_in_from_another_file_is_refused(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    """The MAC binds the kekri: another batch's record (same length) cannot be spliced in."""
    first = encrypt_bytes(b"one", [pki["alice"].recipient], tmp_path / "a")
    second = encrypt_bytes(b"two", [pki["alice"].recipient], tmp_path / "b")
    a_entry, b_entry = (inplace.inspect_file(p)[0].batch for p in (first, second))
    assert a_entry is not None and b_entry is not None
    data = first.read_bytes()
    assert data.count(a_entry.record) == 1 and len(a_entry.record) == len(b_entry.record)
    first.write_bytes(data.replace(a_entry.record, b_entry.record))
    with pytest.raises(AuthenticationError, match="altered"):
        decrypt_bytes(first, pki["alice"])


def test_a_kekri_imgvault_did_not_write_is_refused_clearly(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    plain = tmp_path / "plain"
    plain.write_bytes(b"x" * 100)
    secret = ["-secretkey", os.urandom(32).hex(), "-secretkeyid", "0102030405"]
    enc = openssl_encrypt(plain, [], tmp_path / "enc", secret)  # no certificate recipient
    with pytest.raises(UnsupportedError, match="kekri") as caught:
        decrypt_bytes(enc, pki["alice"])
    assert "openssl cms -decrypt -secretkey" in caught.value.hint


def test_the_batch_kekri_matches_asn1crypto(pki: dict[str, Party]) -> None:
    """Hand-framed DER, checked against asn1crypto's own encoding of the same values."""
    content_key = Secret(os.urandom(fmt.KEY_BYTES))
    kekri_der = BatchKey([pki["alice"].recipient, pki["bob"].recipient]).wrap(content_key)
    parsed = cms.RecipientInfo.load(kekri_der, strict=True)
    assert parsed.name == "kekri"
    kekri = parsed.chosen
    record = kekri["kekid"]["other"]["key_attr"].dump()
    rebuilt = cms.RecipientInfo(
        name="kekri",
        value=cms.KEKRecipientInfo(
            {
                "version": "v4",
                "kekid": {
                    "key_identifier": kekri["kekid"]["key_identifier"].native,
                    "other": {"key_attr_id": fmt.OID_BATCH_KEY, "key_attr": core.Any.load(record)},
                },
                "key_encryption_algorithm": {"algorithm": "aes256_wrap"},
                "encrypted_key": kekri["encrypted_key"].native,
            }
        ),
    )
    assert rebuilt.dump() == kekri_der
    holders = cms.RecipientInfos.load(record, strict=True)
    assert [h.name for h in holders] == ["ktri", "ktri"]


def test_rewrap_gives_files_a_new_batch_for_the_new_recipients(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    files = encrypt_files(tmp_path / "s", 3, [pki["alice"].recipient], Batches())
    batches = Batches()
    for path in files:
        inplace.rewrap_file(path, pki["alice"].as_key, [pki["bob"].recipient], batches=batches)
    assert len({batch_record(p) for p in files}) == 1
    counting = CountingKey(pki["bob"].key)
    key = Key(counting, pki["bob"].recipient.cert)  # type: ignore[arg-type]
    for path, data in files.items():
        out = io.BytesIO()
        with path.open("rb") as f:
            stream.decrypt(f, path.stat().st_size, str(path), key, out)  # type: ignore[arg-type]
        assert out.getvalue() == data
    assert counting.operations == 1


def test_verify_catches_a_kekri_and_ktri_holding_different_keys(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    """AES-GCM does not commit to its key: someone holding only the certificates could craft a
    file that decrypts to different bytes through the kekri (imgvault) and the ktri (OpenSSL).
    `file verify` compares the two; decrypt (one RSA operation per batch) does not."""
    alice = pki["alice"].recipient
    enc = _crafted(tmp_path / "f", lambda one, two: [alice.wrap(two), BatchKey([alice]).wrap(one)])
    assert decrypt_bytes(enc, pki["alice"]) == b"abc"
    with pytest.raises(AuthenticationError, match="different content keys"):
        inplace.verify_file(enc, pki["alice"].as_key)
    honest = encrypt_bytes(b"abc", [alice], tmp_path / "g")
    inplace.verify_file(honest, pki["alice"].as_key)


def test_a_kekri_without_version_2_facts_is_refused(pki: dict[str, Party], tmp_path: Path) -> None:
    """Only the version-2 MAC binds a kekri: without it the file is refused, not trusted."""
    alice = pki["alice"].recipient
    enc = _crafted(
        tmp_path / "f", lambda one, _: [alice.wrap(one), BatchKey([alice]).wrap(one)], facts=False
    )
    with pytest.raises(MalformedError, match="without a version-2 file-info record"):
        decrypt_bytes(enc, pki["alice"])


def test_rewrap_of_a_file_without_facts_adds_no_batch_key(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    """An OpenSSL-made file has no file-info record, so its rewrap gets no kekri either."""
    plain = tmp_path / "plain"
    plain.write_bytes(b"from openssl")
    enc = openssl_encrypt(plain, [pki["alice"]], tmp_path / "enc")
    inplace.rewrap_file(enc, pki["alice"].as_key, [pki["bob"].recipient], batches=Batches())
    assert inplace.inspect_file(enc)[0].batch is None
    assert decrypt_bytes(enc, pki["bob"]) == b"from openssl"


def test_files_of_a_batch_take_successive_steps_and_decrypt_in_any_order(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    files = encrypt_files(tmp_path / "s", 6, [pki["alice"].recipient], Batches())
    entries = [inplace.inspect_file(p)[0].batch for p in files]
    assert [e.step for e in entries if e is not None] == list(range(6))
    counting = CountingKey(pki["alice"].key)
    key = Key(counting, pki["alice"].recipient.cert)  # type: ignore[arg-type]
    for path, data in reversed(files.items()):
        out = io.BytesIO()
        with path.open("rb") as f:
            stream.decrypt(f, path.stat().st_size, str(path), key, out)  # type: ignore[arg-type]
        assert out.getvalue() == data
    assert counting.operations == 1


def test_the_encrypting_process_keeps_no_key_to_what_it_wrote(pki: dict[str, Party]) -> None:
    """After wrapping a file, the batch key has moved one step along a one-way ratchet: what is
    left in memory cannot unwrap that file's content key."""
    batch = BatchKey([pki["alice"].recipient])
    first_step = batch._key.reveal()  # white box: the secret the property is about
    content_key = Secret(os.urandom(fmt.KEY_BYTES))
    wrapped = cms.RecipientInfo.load(batch.wrap(content_key)).chosen["encrypted_key"].native
    assert keywrap.aes_key_unwrap(first_step, wrapped) == content_key.reveal()
    with pytest.raises(keywrap.InvalidUnwrap):
        keywrap.aes_key_unwrap(batch._key.reveal(), wrapped)
    assert batch._key.reveal() == next_step(first_step)


def test_the_ratchet_derives_any_step_in_any_order() -> None:
    first = os.urandom(fmt.KEY_BYTES)
    chain = [first]
    for _ in range(1100):
        chain.append(next_step(chain[-1]))
    ratchet = _Ratchet(Secret(first))
    for step in (600, 3, 255, 256, 257, 1100, 0, 511, 512, 1024):
        assert ratchet.key_at(step).reveal() == chain[step], step
    assert MAX_FILES < fmt.MAX_STEP  # writers start a new batch long before readers refuse


def test_a_step_beyond_the_readers_limit_is_refused(pki: dict[str, Party], tmp_path: Path) -> None:
    enc = encrypt_bytes(b"abc", [pki["alice"].recipient], tmp_path / "f")
    entry = inplace.inspect_file(enc)[0].batch
    assert entry is not None
    data = enc.read_bytes()
    identifier = entry.batch_id + (0).to_bytes(fmt.STEP_BYTES)
    assert data.count(identifier) == 1
    enc.write_bytes(data.replace(identifier, entry.batch_id + fmt.MAX_STEP.to_bytes(4)))
    with pytest.raises(MalformedError, match="step 65536 is beyond"):
        decrypt_bytes(enc, pki["alice"])
