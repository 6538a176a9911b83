"""The committed test vectors (tests/filecrypt/vectors, made by generate.py there) still
decrypt, with imgvault and with OpenSSL: the format cannot drift unnoticed."""

import hashlib
import json
from pathlib import Path

import pytest

from imgvault.filecrypt import stream
from imgvault.filecrypt.recipients import load_certificate, load_private_key
from imgvault.filecrypt.stream import Key
from imgvault.secret import Secret
from imgvault.system.run import run

VECTORS = Path(__file__).parent / "vectors"
MANIFEST = json.loads((VECTORS / "vectors.json").read_text())
KEY = VECTORS / "TEST-ONLY-alice.key.pem"
CERT = VECTORS / "TEST-ONLY-alice.crt.pem"


class _Hasher:
    def __init__(self) -> None:
        self.h = hashlib.sha256()

    def write(self, b: bytes) -> int:
        self.h.update(b)
        return len(b)


def _no_passphrase() -> Secret:
    raise AssertionError("the test key is not encrypted")


@pytest.mark.parametrize("producer", ["imgvault-v1", "imgvault-v2", "openssl"])
@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_vector_decrypts(name: str, producer: str) -> None:
    path = VECTORS / f"{name}.{producer}.der"
    sink = _Hasher()
    with path.open("rb") as f:
        _, info = stream.decrypt(
            f,
            path.stat().st_size,
            path.name,
            Key(load_private_key(KEY, _no_passphrase), load_certificate(CERT)),
            sink,  # type: ignore[arg-type]
        )
    assert sink.h.hexdigest() == MANIFEST[name]["sha256"]
    if producer.startswith("imgvault"):
        version = int(producer[-1])
        assert info is not None
        assert info.to_json() == dict(MANIFEST[name]["file_info"], format_version=version)
    else:
        assert info is None


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("name", sorted(MANIFEST))
def test_openssl_decrypts_imgvault_vector(name: str, version: int, tmp_path: Path) -> None:
    out = tmp_path / "out"
    run(
        ["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-recip", str(CERT),
         "-inkey", str(KEY), "-in", str(VECTORS / f"{name}.imgvault-v{version}.der"),
         "-out", str(out)],
        check=True,
    )  # fmt: skip
    assert hashlib.sha256(out.read_bytes()).hexdigest() == MANIFEST[name]["sha256"]
