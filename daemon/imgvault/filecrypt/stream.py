"""Encrypt, decrypt and rewrap in constant memory (one CHUNK buffer whatever the file size).

Decryption writes plaintext only to the caller's destination, which must be a temporary file
that the caller publishes after this returns: the GCM tag is checked at the very end, so a
return means every byte written is authentic, and an exception means none may be used.
"""

import dataclasses
import hmac
import io
import os
import threading
from collections.abc import Sequence
from typing import BinaryIO

from cryptography import x509
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from imgvault.filecrypt import format as fmt
from imgvault.filecrypt.batch import Batches, BatchKeyCache
from imgvault.filecrypt.errors import AuthenticationError, FilecryptError, MalformedError
from imgvault.filecrypt.recipients import (
    Recipient,
    matching_key_transport,
    unwrap,
    unwrap_key_transport,
)
from imgvault.secret import Secret

CHUNK = 1 << 20


_local = threading.local()


def _buffers() -> tuple[memoryview, memoryview]:
    """This thread's input and output buffers, reused: fresh 1 MiB buffers for every small
    file cost more in page faults than the AES work."""
    if not hasattr(_local, "views"):
        _local.views = (memoryview(bytearray(CHUNK)), memoryview(bytearray(CHUNK + 15)))
    views: tuple[memoryview, memoryview] = _local.views
    return views


class FileChangedError(FilecryptError):
    """The source changed size while it was read: the result would not match any version."""


def _recipient_infos(
    content_key: Secret,
    recipients: Sequence[Recipient],
    batches: Batches | None,
    info: fmt.FileInfo | None,
) -> list[bytes]:
    """One `ktri` per recipient, the batch key's `kekri`, and the file facts bound to them.
    Without facts (rewrap of a file another CMS producer wrote) there is no `kekri` either:
    only the file-info MAC binds it."""
    if not recipients:
        raise FilecryptError("no recipients", "give at least one --recipient certificate")
    infos = [r.wrap(content_key) for r in recipients]
    if info is not None:
        if batches is not None:
            infos.append(batches.wrap(recipients, content_key))
        infos.append(fmt.file_info_recipient(info, content_key, infos))
    return infos


def encrypt(
    src: io.BufferedIOBase,
    dst: BinaryIO,
    info: fmt.FileInfo,
    recipients: Sequence[Recipient],
    batches: Batches | None = None,
) -> None:
    """Write the encryption of exactly `info.size` bytes of `src` to `dst`; with `batches`,
    the content key is also wrapped with the current batch key (see filecrypt.batch)."""
    content_key = Secret(os.urandom(fmt.KEY_BYTES))
    nonce = os.urandom(fmt.NONCE_BYTES)
    try:
        infos = _recipient_infos(content_key, recipients, batches, info)
        encryptor = Cipher(algorithms.AES(content_key.reveal()), modes.GCM(nonce)).encryptor()
    finally:
        content_key.wipe()
    prefix, suffix = fmt.frame(infos, nonce, info.size, b"")
    dst.write(prefix)
    view, out_view = _buffers()
    remaining = info.size
    while remaining:
        n = src.readinto(view[: min(CHUNK, remaining)])
        if not n:
            raise FileChangedError(
                f"the file shrank while it was encrypted ({remaining} bytes missing)",
                "something is writing to it; encrypt it again once it is complete",
            )
        m = encryptor.update_into(view[:n], out_view)
        dst.write(out_view[:m])
        remaining -= n
    if src.read(1):
        raise FileChangedError(
            "the file grew while it was encrypted",
            "something is writing to it; encrypt it again once it is complete",
        )
    encryptor.finalize()
    dst.write(suffix + encryptor.tag)


@dataclasses.dataclass(frozen=True)
class Key:
    """A private key, its certificate when known (to match issuer/serial recipients), and
    the batch keys it has unwrapped so far."""

    private_key: rsa.RSAPrivateKey
    cert: x509.Certificate | None = None
    batch_keys: BatchKeyCache = dataclasses.field(default_factory=BatchKeyCache)


def _check_one_content_key(env: fmt.Envelope, key: Key, name: str, content_key: Secret) -> None:
    """The key's `ktri` holds the same content key as the batch `kekri`. AES-GCM does not commit
    to its key: a file crafted with two different keys could decrypt, to different bytes, both
    through the kekri (imgvault) and through the ktri (OpenSSL). One RSA operation."""
    ktri = matching_key_transport(env.recipients, key.private_key, key.cert)
    if ktri is None:
        return
    direct = unwrap_key_transport(ktri, key.private_key, name)
    try:
        if not hmac.compare_digest(direct.reveal(), content_key.reveal()):
            raise AuthenticationError(
                f"{name}: its batch-key and certificate recipient infos hold different content "
                "keys: other tools would decrypt it to other bytes",
                "the file was crafted or damaged: do not trust it; restore it from a backup",
            )
    finally:
        direct.wipe()


def _open(
    env: fmt.Envelope, key: Key, name: str, *, check_recipients: bool = False
) -> tuple[Secret, fmt.FileInfo | None]:
    """The content key and the verified file facts (checked before any plaintext exists)."""
    content_key = None
    if env.batch is not None:
        content_key = key.batch_keys.content_key(env.batch, key.private_key, name, key.cert)
        if content_key is not None and check_recipients:
            try:
                _check_one_content_key(env, key, name, content_key)
            except BaseException:
                content_key.wipe()
                raise
    if content_key is None:
        content_key = unwrap(env.recipients, key.private_key, name, key.cert)
    try:
        return content_key, env.verified_file_info(content_key, name)
    except BaseException:
        content_key.wipe()
        raise


def _gcm(content_key: Secret, env: fmt.Envelope) -> "Cipher[modes.GCM]":
    try:
        return Cipher(algorithms.AES(content_key.reveal()), modes.GCM(env.nonce, env.tag))
    finally:
        content_key.wipe()


def _pump(
    src: io.BufferedIOBase,
    env: fmt.Envelope,
    *,
    cipher: "Cipher[modes.GCM]",
    plain: BinaryIO | None,
    copy: BinaryIO | None,
    name: str,
) -> None:
    """Run the ciphertext through the decryptor; plaintext to `plain`, ciphertext to `copy`."""
    decryptor = cipher.decryptor()
    if env.auth_attrs:
        decryptor.authenticate_additional_data(fmt.aad_of(env.auth_attrs))
    view, out_view = _buffers()
    for offset, length in env.segments:
        src.seek(offset)
        remaining = length
        while remaining:
            n = src.readinto(view[: min(CHUNK, remaining)])
            if not n:
                raise MalformedError(f"{name}: the file ends inside its content", "it is truncated")
            if copy is not None:
                copy.write(view[:n])
            m = decryptor.update_into(view[:n], out_view)
            if plain is not None:
                plain.write(out_view[:m])
            remaining -= n
    try:
        decryptor.finalize()
    except InvalidTag:
        raise AuthenticationError(
            f"{name}: authentication failed: the file was altered or damaged",
            "no plaintext was kept; restore the file from a backup or replica",
        ) from None


def decrypt(
    src: io.BufferedIOBase,
    size: int,
    name: str,
    key: Key,
    dst: BinaryIO | None,
    *,
    check_recipients: bool = False,
) -> tuple[fmt.Envelope, fmt.FileInfo | None]:
    """Decrypt `src` into `dst` (None: verify only). Raises unless everything verifies; with
    `check_recipients`, also that the key's own `ktri` agrees with the batch key's."""
    env = fmt.parse(src, size, name)
    content_key, info = _open(env, key, name, check_recipients=check_recipients)
    _pump(src, env, cipher=_gcm(content_key, env), plain=dst, copy=None, name=name)
    return env, info


def rewrap(
    src: io.BufferedIOBase,
    size: int,
    name: str,
    key: Key,
    dst: BinaryIO,
    *,
    recipients: Sequence[Recipient],
    batches: Batches | None = None,
) -> tuple[fmt.Envelope, fmt.FileInfo | None]:
    """Write `src` to `dst` with new recipients and the same ciphertext, facts and tag.

    The recipient infos are not part of the GCM input: nothing is re-encrypted. The file-info
    record is rewritten (same facts, current format version) because its MAC covers the
    recipient infos. The content is still decrypted on the way (and discarded) so that a
    damaged file is refused, not rewrapped.
    """
    env = fmt.parse(src, size, name)
    content_key, info = _open(env, key, name)
    facts = None if info is None else dataclasses.replace(info, version=fmt.FORMAT_VERSION)
    try:
        infos = _recipient_infos(content_key, recipients, batches, facts)
    except BaseException:
        content_key.wipe()
        raise
    prefix, suffix = fmt.frame(infos, env.nonce, env.content_length, env.auth_attrs)
    dst.write(prefix)
    _pump(src, env, cipher=_gcm(content_key, env), plain=None, copy=dst, name=name)
    dst.write(suffix + env.tag)
    return env, facts
