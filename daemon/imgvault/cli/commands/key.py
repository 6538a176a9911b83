"""`imgvaultctl key`: the RSA keys and certificates that file encryption wraps content keys to."""

import argparse
import sys
from pathlib import Path

from cryptography.hazmat.primitives import serialization

from imgvault.cli.commands import Subparsers, add_command
from imgvault.cli.output import format_table, print_json
from imgvault.cli.passphrase import reader
from imgvault.filecrypt.keystore import KeyStore
from imgvault.filecrypt.stores import StoreRegistry

HELP = """\
Manage the key store (default /var/lib/imgvault/keys, or $IMGVAULT_STATE_DIR/keys, or
--keystore DIR): NAME.crt certificates and NAME.key private keys (PKCS#8, encrypted with a
passphrase, mode 0600). Encrypting needs certificates only; keep the recovery key's private
key offline and import only its certificate here.

Passphrases are read from --passphrase-file FILE (or /dev/fd/N) or asked on the terminal;
never give them on the command line.

examples:
  imgvaultctl key create pacs-service --bits 4096 --days 1825
  imgvaultctl key import recovery-2026 --cert recovery.pem
  imgvaultctl key list --json
  imgvaultctl key export-cert pacs-service -o pacs-service.pem
"""


def _store(args: argparse.Namespace) -> KeyStore:
    return KeyStore(args.keystore)


def run_create(args: argparse.Namespace) -> int:
    passphrase = reader(args.passphrase_file, "New passphrase for the private key: ", confirm=True)
    entry = _store(args).create(args.name, args.bits, args.days, passphrase)
    if args.json:
        print_json(entry.to_json())
    else:
        print(
            f"created key {entry.name}: RSA-{entry.bits}, certificate valid until "
            f"{entry.cert.not_valid_after_utc:%Y-%m-%d}"
        )
    return 0


def run_import(args: argparse.Namespace) -> int:
    entry = _store(args).import_(
        args.name,
        args.cert,
        args.key,
        reader(args.key_passphrase_file, "Passphrase of the key file: "),
        reader(args.passphrase_file, "New passphrase for the stored key: ", confirm=True),
    )
    if args.json:
        print_json(entry.to_json())
    else:
        kind = "certificate and private key" if entry.has_private_key else "certificate"
        print(f"imported {kind} as {entry.name}: RSA-{entry.bits}")
    return 0


def run_list(args: argparse.Namespace) -> int:
    registry = StoreRegistry()
    entries = _store(args).entries()
    documents = [{**e.to_json(), "stores": registry.using(e.name)} for e in entries]
    if args.json:
        print_json({"keystore": str(_store(args).directory), "keys": documents})
        return 0
    rows = [
        [
            str(d["name"]),
            str(d["bits"]),
            str(d["not_after"])[:10],
            "yes" if d["has_private_key"] else "no",
            ", ".join(registry.using(e.name)) or "-",
            str(d["fingerprint_sha256"])[:23] + "...",
        ]
        for e, d in zip(entries, documents, strict=True)
    ]
    headers = ["NAME", "BITS", "EXPIRES", "PRIVATE KEY", "STORES", "SHA-256 FINGERPRINT"]
    print(format_table(headers, rows))
    return 0


def run_export(args: argparse.Namespace) -> int:
    pem = _store(args).certificate(args.name).public_bytes(serialization.Encoding.PEM)
    if args.output is None:
        sys.stdout.write(pem.decode())
    else:
        args.output.write_bytes(pem)
    return 0


def keystore_options() -> argparse.ArgumentParser:
    """Options every `key` and `file` action shares (an argparse parent parser)."""
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--keystore", type=Path, help="key store directory (for tests, demos)")
    common.add_argument("--json", action="store_true", help="print a JSON document instead")
    return common


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "key",
        help="create, import, list and export file-encryption keys",
        description=HELP,
    )
    verbs = parser.add_subparsers(dest="verb", required=True, metavar="VERB")
    common = keystore_options()

    create = verbs.add_parser("create", parents=[common], help="new RSA key + self-signed cert")
    create.add_argument("name")
    create.add_argument("--bits", type=int, default=4096, help="RSA size, 2048-4096 (4096)")
    create.add_argument("--days", type=int, default=1825, help="certificate validity (1825)")
    create.add_argument("--passphrase-file", type=Path, help="read the new passphrase here")
    create.set_defaults(handler=run_create)

    imp = verbs.add_parser("import", parents=[common], help="import a PKI certificate (+key)")
    imp.add_argument("name")
    imp.add_argument("--cert", type=Path, required=True, help="PEM or DER certificate")
    imp.add_argument("--key", type=Path, help="its private key (optional), PEM or DER")
    imp.add_argument("--key-passphrase-file", type=Path, help="passphrase of --key if any")
    imp.add_argument("--passphrase-file", type=Path, help="passphrase to store the key with")
    imp.set_defaults(handler=run_import)

    listing = verbs.add_parser("list", parents=[common], help="keys, expiry and their stores")
    listing.set_defaults(handler=run_list)

    export = verbs.add_parser("export-cert", parents=[common], help="print a certificate (PEM)")
    export.add_argument("name")
    export.add_argument("-o", "--output", type=Path, help="write here instead of stdout")
    export.set_defaults(handler=run_export)
