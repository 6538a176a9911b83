"""A multi-GiB sparse file round-trips in constant memory (peak RSS of a child process)."""

import json
import sys
from pathlib import Path

from fc_helpers import Party

from imgvault.system.run import run

SIZE = 4 * 1024**3 + 3  # past 2**32: no 32-bit length anywhere
MAX_RSS_MIB = 120  # the interpreter and libraries; the file is 4 GiB

CHILD = """
import hashlib, json, resource, sys
from pathlib import Path
from imgvault.filecrypt import inplace, stream
from imgvault.filecrypt.recipients import check_recipient, load_certificate, load_private_key
from imgvault.filecrypt.stream import Key

path, cert, key = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])

def digest(f):
    h = hashlib.sha256()
    while chunk := f.read(stream.CHUNK):
        h.update(chunk)
    return h.hexdigest()

class Hasher:
    def __init__(self):
        self.h = hashlib.sha256()
    def write(self, b):
        self.h.update(b)
        return len(b)

with path.open("rb") as f:
    before = digest(f)
inplace.encrypt_file(path, [check_recipient(load_certificate(cert), "cert")])
sink = Hasher()
with path.open("rb") as f:
    stream.decrypt(f, path.stat().st_size, str(path), Key(load_private_key(key, None)), sink)
print(json.dumps({
    "before": before,
    "after": sink.h.hexdigest(),
    "encrypted_size": path.stat().st_size,
    "maxrss_kib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
}))
"""


def test_four_gib_sparse_file_round_trips_in_constant_memory(
    pki: dict[str, Party], tmp_path: Path
) -> None:
    path = tmp_path / "big.dcm"
    with path.open("wb") as f:
        f.truncate(SIZE)
        for offset in (0, 2**31 - 1, 2**32, SIZE - 1):
            f.seek(offset)
            f.write(b"\x7f")
    result = run(
        [
            sys.executable,
            "-c",
            CHILD,
            str(path),
            str(pki["alice"].cert_pem),
            str(pki["alice"].key_pem),
        ],
        check=True,
    )
    report = json.loads(result.stdout)
    print(f"4 GiB round trip: peak RSS {report['maxrss_kib'] // 1024} MiB")
    assert report["before"] == report["after"]
    assert report["encrypted_size"] > SIZE
    assert report["maxrss_kib"] < MAX_RSS_MIB * 1024, report
