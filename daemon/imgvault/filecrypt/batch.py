"""Batch keys: one RSA private-key operation per batch of files instead of one per file.

An encrypting run (a `file encrypt` command, or ten minutes of `imgvaultd`) draws a random
256-bit batch key, wraps it once for each recipient certificate, and puts into every file,
beside the usual RSA recipient infos, a `kekri` holding that file's content key wrapped with
the batch key's current step (AES key wrap) and the batch key's wrapped copies. Each file moves
the batch key one step along a one-way ratchet (HMAC-SHA256) and the old step is wiped, so the
memory of an encrypting process never holds a key that opens a file it already wrote. A
decryptor unwraps the first step with RSA once and derives the others. Encrypting still needs
certificates only. docs/filecrypt-format.md has the layout and the reasoning.
"""

import hashlib
import hmac
import os
import threading
import time
from collections.abc import Sequence

from cryptography import x509
from cryptography.hazmat.primitives import keywrap
from cryptography.hazmat.primitives.asymmetric import rsa

from imgvault.filecrypt import der
from imgvault.filecrypt import format as fmt
from imgvault.filecrypt.errors import AuthenticationError
from imgvault.filecrypt.recipients import (
    Recipient,
    matching_key_transport,
    unwrap_key_transport,
)
from imgvault.secret import Secret

MAX_FILES = 10_000
MAX_SECONDS = 600.0


STEP_LABEL = b"imgvault batch-key step"


def next_step(key: bytes) -> bytes:
    """The ratchet: one-way, so a step's key reveals no earlier step."""
    return hmac.digest(key, STEP_LABEL, "sha256")


class BatchKey:
    """One batch: its current step key (in memory only) and the fixed DER around each file's
    wrapped key. Not thread-safe by itself: `Batches` serialises `wrap`."""

    def __init__(self, recipients: Sequence[Recipient]) -> None:
        self._key = Secret(os.urandom(fmt.KEY_BYTES))
        record = der.set_of([r.wrap(self._key) for r in recipients])
        self._other = der.tlv(der.SEQUENCE, fmt.BATCH_KEY_TLV + record)
        self._batch_id = os.urandom(fmt.BATCH_ID_BYTES)
        self.files = 0  # also the step of the next file
        self.started = time.monotonic()

    def wrap(self, content_key: Secret) -> bytes:
        """DER of this file's `kekri` RecipientInfo; then the key moves one step on."""
        identifier = self._batch_id + self.files.to_bytes(fmt.STEP_BYTES)
        kekid = der.tlv(der.SEQUENCE, der.tlv(der.OCTET_STRING, identifier) + self._other)
        wrapped = keywrap.aes_key_wrap(self._key.reveal(), content_key.reveal())
        body = der.integer(4) + kekid + fmt.AES256_WRAP_ALGORITHM
        body += der.tlv(der.OCTET_STRING, wrapped)
        following = Secret(next_step(self._key.reveal()))
        self._key.wipe()
        self._key = following
        self.files += 1
        return der.tlv(der.CONTEXT_2_CONSTRUCTED, body)

    def wipe(self) -> None:
        self._key.wipe()


class Batches:
    """The current batch key of an encrypting process, renewed by count and age and whenever
    the recipients change. Thread-safe: `run_batch` encrypts from several threads."""

    def __init__(self, max_files: int = MAX_FILES, max_seconds: float = MAX_SECONDS) -> None:
        self._max_files = max_files
        self._max_seconds = max_seconds
        self._lock = threading.Lock()
        self._current: tuple[tuple[Recipient, ...], BatchKey] | None = None

    def wrap(self, recipients: Sequence[Recipient], content_key: Secret) -> bytes:
        who = tuple(recipients)  # compared by name and certificate
        with self._lock:
            if self._current is not None:
                owners, batch = self._current
                fresh = time.monotonic() - batch.started < self._max_seconds
                if owners == who and fresh and batch.files < self._max_files:
                    return batch.wrap(content_key)
                batch.wipe()
            batch = BatchKey(recipients)
            self._current = (who, batch)
            return batch.wrap(content_key)

    def close(self) -> None:
        """Wipe the batch key; the next file starts a new batch."""
        with self._lock:
            if self._current is not None:
                self._current[1].wipe()
                self._current = None


class _Ratchet:
    """Every step of one batch key a decryptor has derived, each derived once (a batch holds
    at most 10,000 files; a reader derives at most fmt.MAX_STEP steps)."""

    def __init__(self, first: Secret) -> None:
        self._steps = [first]

    def key_at(self, step: int) -> Secret:
        while len(self._steps) <= step:
            self._steps.append(Secret(next_step(self._steps[-1].reveal())))
        return self._steps[step]

    def wipe(self) -> None:
        for secret in self._steps:
            secret.wipe()


class BatchKeyCache:
    """Batch keys unwrapped by one private key, by their record (thread-safe).

    The SHA-256 of the record's DER is the cache key: equal bytes hold the same wrapped batch
    key, and a record was fully parsed and unwrapped before it was cached.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[bytes, _Ratchet] = {}

    def content_key(
        self,
        batch: fmt.BatchEntry,
        key: rsa.RSAPrivateKey,
        name: str,
        cert: x509.Certificate | None,
    ) -> Secret | None:
        """The file's content key through its batch key; None if `key` is not a recipient of
        the batch key (then the file's own recipient infos are used)."""
        record_id = hashlib.sha256(batch.record).digest()
        with self._lock:  # held while unwrapping: threads wait for one RSA operation
            ratchet = self._keys.get(record_id)
            if ratchet is None:
                ktri = matching_key_transport(batch.recipients(name), key, cert)
                if ktri is None:
                    return None
                ratchet = _Ratchet(unwrap_key_transport(ktri, key, name, "batch key"))
                self._keys[record_id] = ratchet
            step_key = ratchet.key_at(batch.step)  # the ratchet's own: wiped with the cache
        try:
            return Secret(keywrap.aes_key_unwrap(step_key.reveal(), batch.wrapped_key))
        except keywrap.InvalidUnwrap:
            raise AuthenticationError(
                f"{name}: authentication failed: the batch-key recipient info was altered",
                "no plaintext was kept; restore the file from a backup or replica, or recover "
                "its content with openssl cms -decrypt (docs/filecrypt-format.md)",
            ) from None

    def wipe(self) -> None:
        with self._lock:
            for ratchet in self._keys.values():
                ratchet.wipe()
            self._keys.clear()
