#!/usr/bin/env python3
"""Regenerate the committed file-encryption test vectors (run from the repository root):

    .venv/bin/python tests/filecrypt/vectors/generate.py [--new-keys]

TEST-ONLY keys: the private keys here are public and protect nothing. Each plaintext is
encrypted by imgvault in the current format, with a batch key (NAME.imgvault-v2.der), and by
`openssl cms -encrypt` (NAME.openssl.der); vectors.json records the plaintext digests and the
file facts imgvault stored. NAME.imgvault-v1.der were written by format version 1 (this
script before 2026-11-25) and are kept, never regenerated: imgvault must go on reading them.
"""

import argparse
import hashlib
import json
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from imgvault.filecrypt import format as fmt
from imgvault.filecrypt import stream
from imgvault.filecrypt.batch import Batches
from imgvault.filecrypt.keystore import self_signed_certificate
from imgvault.filecrypt.recipients import check_recipient, load_certificate
from imgvault.system.run import run

HERE = Path(__file__).resolve().parent
KEY = HERE / "TEST-ONLY-alice.key.pem"
CERT = HERE / "TEST-ONLY-alice.crt.pem"
# A DICOM-shaped plaintext with no patient data: preamble, magic, a few synthetic bytes.
PLAINTEXTS = {
    "empty": b"",
    "one-byte": b"\x42",
    "dicom-like": b"\0" * 128 + b"DICM" + bytes(range(256)) * 2,
}
FACTS = {"mode": 0o640, "uid": 1000, "gid": 1000, "mtime_ns": 1_767_225_600_000_000_000}


def new_keys() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    KEY.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    cert = self_signed_certificate(key, "TEST-ONLY alice", 36500)
    CERT.write_bytes(cert.public_bytes(serialization.Encoding.PEM))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--new-keys", action="store_true", help="also replace the test key")
    if parser.parse_args().new_keys or not KEY.exists():
        new_keys()
    recipient = check_recipient(load_certificate(CERT), "alice")
    manifest = {}
    for name, data in PLAINTEXTS.items():
        plain = HERE / f"{name}.plain"
        plain.write_bytes(data)
        info = fmt.FileInfo(size=len(data), **FACTS)
        out = HERE / f"{name}.imgvault-v{fmt.FORMAT_VERSION}.der"
        with plain.open("rb") as src, out.open("wb") as dst:
            stream.encrypt(src, dst, info, [recipient], Batches())
        run(
            ["openssl", "cms", "-encrypt", "-binary", "-aes-256-gcm", "-outform", "DER",
             "-recip", str(CERT), "-keyopt", "rsa_padding_mode:oaep",
             "-keyopt", "rsa_oaep_md:sha256", "-in", str(plain),
             "-out", str(HERE / f"{name}.openssl.der")],
            check=True,
        )  # fmt: skip
        manifest[name] = {"sha256": hashlib.sha256(data).hexdigest(), "file_info": info.to_json()}
    (HERE / "vectors.json").write_text(json.dumps(manifest, indent=2) + "\n")


if __name__ == "__main__":
    main()
