"""`imgvaultctl demo`: the main job on a demo store in a local directory; no disk, no root."""

import argparse
import hashlib
import os
import secrets
import tempfile
import time
from pathlib import Path

from imgvault.cli.commands import Subparsers, add_command
from imgvault.cli.output import format_table, human_size, print_json
from imgvault.cli.progress import Progress
from imgvault.dicom.synthetic import SLICE_PIXELS, ct_slice
from imgvault.errors import ImgvaultError
from imgvault.filecrypt.inplace import check_file
from imgvault.filecrypt.keystore import KeyStore
from imgvault.filecrypt.stores import Store, StoreRegistry
from imgvault.secret import Secret
from imgvault.stores.watcher import StoreEvent, StoreWatcher
from imgvault.system.atomic import write_new
from imgvault.system.run import run

HELP = """\
Show what imgvaultd does on an imaging server, on a demo store in a local directory:

  1. creates (once) two RSA-3072 keys in DIR/state/keys: a service key and a recovery key,
     their private keys encrypted with a random passphrase kept in DIR/state/demo-passphrase;
  2. registers the store DIR/store with both keys as recipients;
  3. watches the store as imgvaultd does, and drops synthetic CT slices into it the way a DICOM
     receiver does (write elsewhere, then rename in); each is encrypted in place once it
     settles: CMS AuthEnvelopedData, AES-256-GCM, one RSA-OAEP recipient per key;
  4. proves the hospital does not depend on imgvault: stock `openssl cms -decrypt` restores one
     slice bit for bit with the recovery key.

Run it again to add more slices: keys and store are reused. Nothing outside DIR is touched.
The synthetic slices hold no patient data.

examples:
  imgvaultctl demo
  imgvaultctl demo --dir /tmp/demo --files 50 --json
  imgvaultctl file inspect imgvault-demo/store/STUDY1/SERIES1/IMG0001.dcm --json
"""

KEYS = ("demo-service", "demo-recovery")


def _passphrase(state: Path) -> Path:
    path = state / "demo-passphrase"
    if not path.exists():
        state.mkdir(mode=0o700, parents=True, exist_ok=True)
        write_new(path, (secrets.token_urlsafe(24) + "\n").encode())
    return path


def _setup(directory: Path) -> tuple[KeyStore, Store, Path]:
    state = directory / "state"
    passphrase_file = _passphrase(state)
    keystore = KeyStore(state / "keys")
    existing = {entry.name for entry in keystore.entries()}
    for name in KEYS:
        if name not in existing:
            keystore.create(
                name, 3072, 365, lambda: Secret(passphrase_file.read_bytes().rstrip(b"\n"))
            )
    store = Store("demo", directory / "store", list(KEYS))
    store.root.mkdir(parents=True, exist_ok=True)
    StoreRegistry(state / "filecrypt-stores.json").save(store)
    return keystore, store, passphrase_file


def _drop_slices(store: Path, count: int, progress: Progress) -> dict[Path, str]:
    """Write `count` slices into a new series, each renamed in once complete."""
    series = 1
    while (store / "STUDY1" / f"SERIES{series}").exists():
        series += 1
    target = store / "STUDY1" / f"SERIES{series}"
    target.mkdir(parents=True)
    pixels = os.urandom(SLICE_PIXELS)
    digests: dict[Path, str] = {}
    with tempfile.TemporaryDirectory(dir=store.parent, prefix=".incoming-") as incoming:
        for number in range(1, count + 1):
            partial = Path(incoming) / f"IMG{number:04d}.dcm"
            ct_slice(partial, number, pixels)
            final = target / partial.name
            digests[final] = hashlib.sha256(partial.read_bytes()).hexdigest()
            size = partial.stat().st_size
            partial.rename(final)
            progress.step(size)
    return digests


def _openssl_restores(path: Path, keystore: KeyStore, passphrase_file: Path, digest: str) -> bool:
    with tempfile.TemporaryDirectory(prefix="imgvault-demo-") as scratch:
        out = Path(scratch) / "restored.dcm"
        run(
            ["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(path),
             "-recip", str(keystore.directory / "demo-recovery.crt"),
             "-inkey", str(keystore.directory / "demo-recovery.key"),
             "-passin", f"file:{passphrase_file}", "-out", str(out)],
            check=True,
        )  # fmt: skip
        return hashlib.sha256(out.read_bytes()).hexdigest() == digest


def run_demo(args: argparse.Namespace) -> int:
    directory = args.dir.resolve()
    keystore, store, passphrase_file = _setup(directory)
    recipients = [keystore.recipient(name) for name in KEYS]
    events: list[StoreEvent] = []
    watcher = StoreWatcher(store, recipients, events.append, settle_seconds=0.5)
    started = time.monotonic()
    watcher.start()
    progress = Progress(args.files, args.files * (SLICE_PIXELS + 1024), enabled=not args.json)
    try:
        digests = _drop_slices(store.root, args.files, progress)
        progress.close()
        settled = watcher.wait_idle(timeout=120 + args.files)
    finally:
        watcher.stop()
    seconds = time.monotonic() - started
    encrypted = [p for p in digests if _is_encrypted(p, store.root)]
    sample = min(digests)
    proof = _openssl_restores(sample, keystore, passphrase_file, digests[sample])
    problems = [e for e in events if e.action in ("refused", "failed")]
    ok = settled and len(encrypted) == len(digests) and proof and not problems
    if args.json:
        print_json({
            "ok": ok, "store": str(store.root), "keys": str(keystore.directory),
            "files": len(digests), "encrypted": len(encrypted), "seconds": round(seconds, 2),
            "openssl_restored": str(sample) if proof else None,
            "events": [e.to_json() for e in events],
        })  # fmt: skip
        return 0 if ok else 1
    total = sum(p.stat().st_size for p in encrypted)
    print(format_table(
        ["STORE", "SLICES DROPPED", "ENCRYPTED", "SIZE ON DISK", "TIME", "RECIPIENTS"],
        [[str(store.root), str(len(digests)), str(len(encrypted)), human_size(total),
          f"{seconds:.1f} s", ", ".join(KEYS)]],
    ))  # fmt: skip
    for event in problems:
        print(f"{event.action}: {event.path}: {event.detail}")
    verdict = "restored bit for bit" if proof else "DID NOT restore"
    print(f"\nopenssl cms -decrypt with the recovery key {verdict}: {sample}")
    print(f"inspect a file:  imgvaultctl file inspect {sample}")
    print(f"decrypt a file:  imgvaultctl file decrypt {sample} --keystore {keystore.directory} "
          f"--key demo-recovery --passphrase-file {passphrase_file} -o restored.dcm")  # fmt: skip
    return 0 if ok else 1


def _is_encrypted(path: Path, root: Path) -> bool:
    try:
        return check_file(path, root=root).action == "already-encrypted"
    except ImgvaultError:
        return False


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "demo",
        help="encrypt a demo image store in a local directory (no disk, no root needed)",
        description=HELP,
    )
    parser.add_argument(
        "--dir", type=Path, default=Path("imgvault-demo"),
        help="demo directory: keys, store and passphrase go here (default: ./imgvault-demo)",
    )  # fmt: skip
    parser.add_argument("--files", type=int, default=20, help="slices to drop (default: 20)")
    parser.add_argument("--json", action="store_true", help="print a JSON document instead")
    parser.set_defaults(handler=run_demo)
