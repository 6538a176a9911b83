"""`imgvaultctl file`: encrypt, decrypt, inspect, verify, rewrap and recover image files."""

import argparse
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from imgvault.cli.commands import Subparsers, add_command
from imgvault.cli.commands.key import keystore_options
from imgvault.cli.output import format_table, human_size, print_json
from imgvault.cli.passphrase import reader
from imgvault.cli.progress import Progress
from imgvault.errors import ImgvaultError
from imgvault.filecrypt import format as fmt
from imgvault.filecrypt import inplace
from imgvault.filecrypt.batch import Batches
from imgvault.filecrypt.errors import NotEncryptedError
from imgvault.filecrypt.keystore import KeyStore
from imgvault.filecrypt.recipients import (
    Recipient,
    certificate_key_id,
    describe_rid,
    rsa_public_key,
)
from imgvault.filecrypt.stores import Store, StoreRegistry
from imgvault.filecrypt.stream import Key

HELP = """\
File-level encryption of image stores. Each file becomes a DER CMS AuthEnvelopedData
(AES-256-GCM content, RSA-OAEP-SHA-256 recipients) that stock OpenSSL decrypts:
  openssl cms -decrypt -binary -inform DER -recip CERT.pem -inkey KEY.pem -in FILE -out OUT
See docs/filecrypt-format.md. In-place operations are crash-safe (temporary file, fsync,
rename); after a crash, `file recover` removes leftover temporary files. Encrypting or
decrypting twice changes nothing (decrypt skips plaintext files it finds in directories; a
plaintext file named on the command line is an error). Files encrypted by one command share a
batch key, so decrypting them needs one RSA private-key operation, not one per file; `verify`
also checks that the file's own RSA recipient info holds the same key (what OpenSSL uses).
Keys are names from `imgvaultctl key list` or certificate/key file paths.

examples:
  imgvaultctl file store add pacs --root /srv/pacs --recipient pacs-service --recipient recovery
  imgvaultctl file encrypt --store pacs
  imgvaultctl file encrypt /srv/pacs/2026/ct1.dcm --recipient pacs-service --recipient rec.pem
  imgvaultctl file inspect /srv/pacs/2026/ct1.dcm --json
  imgvaultctl file verify /srv/pacs/2026/ct1.dcm --key pacs-service
  imgvaultctl file decrypt /srv/pacs/2026/ct1.dcm --key recovery-key.pem -o /tmp/ct1.dcm
  imgvaultctl file decrypt --store pacs --key pacs-service     # the whole store, in place
  imgvaultctl file rewrap --store pacs --key pacs-service --recipient pacs-2027 \\
      --recipient recovery
  imgvaultctl file recover --store pacs
"""


def _files(paths: Sequence[Path]) -> Iterator[Path]:
    """Files named, and regular files under directories named (temporary files excluded)."""
    for path in paths:
        if path.is_dir() and not path.is_symlink():
            for dirpath, dirs, names in os.walk(path):
                dirs.sort()
                for name in sorted(names):
                    if not inplace.TEMP_NAME.fullmatch(name):
                        yield Path(dirpath) / name
        else:
            yield path


def _targets(args: argparse.Namespace) -> tuple[list[Path], Path | None, Store | None]:
    store = StoreRegistry().get(args.store) if args.store else None
    root = store.root if store else args.root
    paths = list(args.paths) or ([store.root] if store else [])
    if not paths:
        raise ImgvaultError("no files given", "give PATH... or --store NAME")
    return list(_files(paths)), root, store


def _batch(
    args: argparse.Namespace,
    files: list[Path],
    operation: Callable[[Path, set[str]], inplace.Outcome],
) -> int:
    """Run `operation` on every file, going on past failures; report each failure."""
    sizes = {p: p.lstat().st_size if p.exists() else 0 for p in files}
    progress = Progress(len(files), sum(sizes.values()), enabled=not args.json)
    outcomes: list[inplace.Outcome] = []
    failures: list[tuple[Path, ImgvaultError]] = []
    try:
        for path, outcome, error in inplace.run_batch(files, operation, jobs=args.jobs):
            if outcome is not None:
                outcomes.append(outcome)
            if error is not None:
                failures.append((path, error))
            progress.step(sizes[path])
    finally:
        progress.close()
    outcomes.sort(key=lambda o: str(o.path))
    failures.sort(key=lambda f: str(f[0]))
    counts: dict[str, int] = {}
    for outcome in outcomes:
        counts[outcome.action] = counts.get(outcome.action, 0) + 1
    if args.json:
        print_json(
            {
                "files": [o.to_json() for o in outcomes],
                "failed": [
                    {"path": str(p), "error": e.message, "hint": e.hint} for p, e in failures
                ],
                "counts": counts,
            }
        )
    else:
        for _, failure in failures:
            print(f"imgvaultctl: error: {failure}", file=sys.stderr)
        summary = ", ".join(f"{n} {action}" for action, n in sorted(counts.items()))
        print(f"{summary or 'nothing done'}; {len(failures)} failed")
    return 1 if failures else 0


def _recipients(args: argparse.Namespace, store: Store | None) -> list[Recipient]:
    names = args.recipient or (store.recipients if store else [])
    if not names:
        raise ImgvaultError(
            "no recipients", "give --recipient CERT (a key name or certificate file), or --store"
        )
    keystore = KeyStore(args.keystore)
    unique: dict[bytes, Recipient] = {}
    for name in names:  # the same key named twice (by name and by file) is one recipient
        recipient = keystore.recipient(name)
        unique.setdefault(recipient.key_id, recipient)
    return list(unique.values())


def _key(args: argparse.Namespace) -> Key:
    return KeyStore(args.keystore).key(
        args.key, reader(args.passphrase_file, f"Passphrase of key {args.key}: ")
    )


def run_encrypt(args: argparse.Namespace) -> int:
    files, root, store = _targets(args)
    recipients = _recipients(args, store)
    if args.check:
        return _batch(args, files, lambda p, _: inplace.check_file(p, root=root))
    batches = Batches()
    try:
        return _batch(
            args,
            files,
            lambda p, dirs: inplace.encrypt_file(
                p, recipients, batches=batches, root=root, dirs_to_sync=dirs
            ),
        )
    finally:
        batches.close()


def run_rewrap(args: argparse.Namespace) -> int:
    files, root, store = _targets(args)
    if not args.recipient:
        raise ImgvaultError("no new recipients", "give the complete new set with --recipient")
    recipients = _recipients(args, store)
    key = _key(args)
    batches = Batches()
    try:
        status = _batch(
            args,
            files,
            lambda p, dirs: inplace.rewrap_file(
                p, key, recipients, batches=batches, root=root, dirs_to_sync=dirs
            ),
        )
    finally:
        batches.close()
        key.batch_keys.wipe()
    if store is not None and status == 0:
        store.recipients = list(args.recipient)
        StoreRegistry().save(store)
    return status


def run_decrypt(args: argparse.Namespace) -> int:
    files, root, _ = _targets(args)
    if args.output is not None and (len(files) != 1 or list(args.paths) != files):
        raise ImgvaultError(
            "-o/--output needs exactly one encrypted file", "give one PATH, or drop -o to "
            "decrypt in place"
        )  # fmt: skip
    key = _key(args)
    try:
        if args.output is not None:
            outcome = inplace.decrypt_to(files[0], key, args.output)
            if args.json:
                print_json(outcome.to_json())
            else:
                print(f"decrypted {files[0]} to {args.output} ({human_size(outcome.size_after)})")
            return 0
        named = {p for p in args.paths if not p.is_dir()}

        def decrypt(path: Path, dirs: set[str]) -> inplace.Outcome:
            """A plaintext file found in a directory is skipped (decrypting a store twice
            changes nothing); one named on the command line is an error."""
            try:
                return inplace.decrypt_file(path, key, root=root, dirs_to_sync=dirs)
            except NotEncryptedError:
                if path in named:
                    raise
                size = path.lstat().st_size
                return inplace.Outcome(path, "not-encrypted", size, size)

        return _batch(args, files, decrypt)
    finally:
        key.batch_keys.wipe()


def _recipient_rows(args: argparse.Namespace, env: fmt.Envelope) -> list[dict[str, str]]:
    """Each recipient's identifier and the key-store name holding it, if any."""
    known: dict[bytes | int, str] = {}
    for entry in KeyStore(args.keystore).entries():
        known[certificate_key_id(entry.cert)] = entry.name
        known[entry.cert.serial_number] = entry.name
    rows = []
    for ktri in (k.info for k in env.recipients):
        rid = ktri["rid"]
        ident = (
            bytes(rid.chosen.native)
            if rid.name == "subject_key_identifier"
            else rid.chosen["serial_number"].native
        )
        rows.append(
            {
                "id": describe_rid(ktri),
                "key_encryption": ktri["key_encryption_algorithm"]["algorithm"].native,
                "wrapped_key_bits": str(len(ktri["encrypted_key"].native) * 8),
                "key_name": known.get(ident, ""),
            }
        )
    return rows


def run_inspect(args: argparse.Namespace) -> int:
    env, size = inplace.inspect_file(args.path)
    info = env.unverified_file_info
    rows = _recipient_rows(args, env)
    batch: dict[str, Any] | None = None
    if env.batch is not None:
        holders = [describe_rid(k.info) for k in env.batch.recipients(str(args.path))]
        batch = {"id": env.batch.batch_id.hex(), "step": env.batch.step, "recipients": holders}
    document = {
        "path": str(args.path),
        "format": "CMS AuthEnvelopedData (DER)",
        "content_cipher": "AES-256-GCM",
        "file_size": size,
        "content_size": env.content_length,
        "recipients": rows,
        "file_info": info.to_json() if info else None,
        "file_info_verified": False,
        "batch_key": batch,
    }
    if args.json:
        print_json(document)
        return 0
    print(
        f"{args.path}: CMS AuthEnvelopedData, AES-256-GCM, {human_size(size)} "
        f"({env.content_length} bytes of content)"
    )
    if info is not None:
        print(
            f"original: mode {info.mode:04o}, owner {info.uid}:{info.gid}, "
            f"mtime_ns {info.mtime_ns}, format v{info.version} (unverified without a key)"
        )
    headers = ["RECIPIENT", "KEY ENCRYPTION", "WRAPPED KEY", "KEY NAME"]
    table = [
        [r["id"], r["key_encryption"], r["wrapped_key_bits"] + " bits", r["key_name"] or "-"]
        for r in rows
    ]
    print(format_table(headers, table))
    if batch is not None:
        print(
            f"batch key {batch['id']} step {batch['step']}, wrapped for: "
            f"{', '.join(batch['recipients'])}"
        )
    return 0


def run_verify(args: argparse.Namespace) -> int:
    key = _key(args)
    try:
        env, info = inplace.verify_file(args.path, key)
    finally:
        key.batch_keys.wipe()
    bits = rsa_public_key_bits(key)
    if args.json:
        print_json(
            {
                "path": str(args.path),
                "ok": True,
                "content_size": env.content_length,
                "file_info": info.to_json() if info else None,
            }
        )
    else:
        print(f"{args.path}: OK (content and facts authentic; RSA-{bits} key is a recipient)")
    return 0


def rsa_public_key_bits(key: Key) -> int:
    if key.cert is not None:
        return rsa_public_key(key.cert, "key").key_size
    return key.private_key.key_size


def run_recover(args: argparse.Namespace) -> int:
    root = StoreRegistry().get(args.store).root if args.store else args.root
    if root is None:
        raise ImgvaultError("no directory given", "give ROOT or --store NAME")
    removed = inplace.recover(root)
    if args.json:
        print_json({"root": str(root), "removed": [str(p) for p in removed]})
    else:
        for path in removed:
            print(f"removed {path}")
        print(f"{len(removed)} leftover temporary files removed under {root}")
    return 0


def run_store_add(args: argparse.Namespace) -> int:
    keystore = KeyStore(args.keystore)
    for name in args.recipient:
        keystore.recipient(name)  # each must exist and be usable now
    if not args.root.is_dir():
        raise ImgvaultError(f"{args.root}: not a directory", "give the store's root directory")
    store = Store(args.name, args.root.resolve(), list(args.recipient))
    StoreRegistry().save(store)
    if args.json:
        print_json(store.to_json())
    else:
        print(f"store {store.name}: {store.root}, recipients {', '.join(store.recipients)}")
    return 0


def run_store_list(args: argparse.Namespace) -> int:
    stores = StoreRegistry().stores().values()
    if args.json:
        print_json({"stores": [s.to_json() for s in stores]})
    else:
        rows = [[s.name, str(s.root), ", ".join(s.recipients)] for s in stores]
        print(format_table(["NAME", "ROOT", "RECIPIENTS"], rows))
    return 0


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "file",
        help="encrypt, decrypt, inspect, verify and rewrap image files",
        description=HELP,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = keystore_options()
    keyed = argparse.ArgumentParser(add_help=False)
    keyed.add_argument("--key", required=True, help="key name, or private key file (PEM/DER)")
    keyed.add_argument("--passphrase-file", type=Path, help="passphrase of the key, if any")
    many = argparse.ArgumentParser(add_help=False)
    many.add_argument("paths", nargs="*", type=Path, metavar="PATH", help="files or directories")
    many.add_argument("--store", help="a registered store: its root, recipients and paths")
    many.add_argument("--root", type=Path, help="refuse any file outside this directory")
    many.add_argument(
        "--jobs", type=int, default=4, help="files in flight at once (4); overlaps fsyncs"
    )
    recipients = argparse.ArgumentParser(add_help=False)
    recipients.add_argument(
        "--recipient", action="append", help="key name or certificate file (repeat)"
    )

    p = verbs.add_parser(
        "encrypt", parents=[common, many, recipients], help="encrypt files in place"
    )
    p.add_argument(
        "--check", action="store_true", help="change nothing; report what would be encrypted"
    )
    p.set_defaults(handler=run_encrypt)
    p = verbs.add_parser(
        "rewrap",
        parents=[common, many, recipients, keyed],
        help="replace recipients, keep the content",
    )
    p.set_defaults(handler=run_rewrap)
    p = verbs.add_parser(
        "decrypt", parents=[common, many, keyed], help="decrypt files (in place, or to -o)"
    )
    p.add_argument(
        "-o", "--output", type=Path, help="with one PATH: new file to write instead of in place"
    )
    p.set_defaults(handler=run_decrypt)
    p = verbs.add_parser("inspect", parents=[common], help="show recipients and sizes")
    p.add_argument("path", type=Path)
    p.set_defaults(handler=run_inspect)
    p = verbs.add_parser("verify", parents=[common, keyed], help="check a file decrypts")
    p.add_argument("path", type=Path)
    p.set_defaults(handler=run_verify)
    p = verbs.add_parser("recover", parents=[common], help="remove leftover temporary files")
    p.add_argument("root", type=Path, nargs="?", help="directory to clean (or --store)")
    p.add_argument("--store", help="a registered store")
    p.set_defaults(handler=run_recover)

    store = verbs.add_parser("store", help="register stores (root + recipients)")
    store_verbs = store.add_subparsers(dest="store_verb", required=True, metavar="VERB")
    p = store_verbs.add_parser("add", parents=[common], help="register or update a store")
    p.add_argument("name")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--recipient", action="append", required=True)
    p.set_defaults(handler=run_store_add)
    p = store_verbs.add_parser("list", parents=[common], help="list registered stores")
    p.set_defaults(handler=run_store_list)
