"""`imgvaultctl volume key list|add|change|remove`: the passphrases of a volume."""

import argparse
from collections.abc import Callable
from typing import TypeVar

from imgvault.cli.commands import Subparsers
from imgvault.cli.interaction import add_key_file_option, new_passphrase, with_key
from imgvault.cli.output import format_table, print_json
from imgvault.cli.recovery_options import add_recovery_options, print_recovery_key, recovery_target
from imgvault.secret import Secret
from imgvault.volumes import keys, recovery
from imgvault.volumes.resolve import VolumeTarget, resolve_volume

T = TypeVar("T")

HELP = """\
Manage the keyslots of a volume. Every change is authorised by a current passphrase (prompted
without echo, three tries, or --key-file); new passphrases are typed twice or read from
--new-key-file. New keyslots use the PBKDF of the volume's profile. Each change is recorded in
the registry (last key change), which 'status' compares with the header backup's date.

  list    keyslots with their PBKDF, priority, and which holds the recovery key
  add     add a passphrase in a free keyslot
  change  replace a passphrase (rotation); the keyslot keeps its role
  remove  wipe a keyslot, authorised by a passphrase of another keyslot; the last usable
          keyslot is never removed
  recovery  make a new recovery key (printed once, --recovery-key-file, or --recovery-cert)
          and wipe the old recovery keyslot: after a leak, or when its holder leaves

examples:
  imgvaultctl volume key list pacs-store
  imgvaultctl volume key add pacs-store
  imgvaultctl volume key change pacs-store --key-file old.key --new-key-file new.key
  imgvaultctl volume key remove pacs-store --slot 2
  imgvaultctl volume key recovery pacs-store --recovery-key-file /root/pacs.recovery
"""


def _slot_row(info: keys.KeyslotInfo) -> list[str]:
    slot, pbkdf = info.slot, info.slot.pbkdf
    if pbkdf is None:
        cost = "-"
    elif pbkdf.kind == "pbkdf2":
        cost = f"pbkdf2-{pbkdf.hash}, {pbkdf.iterations} iterations"
    else:
        cost = (
            f"{pbkdf.kind}, time {pbkdf.iterations}, {pbkdf.memory_kib} KiB, "
            f"{pbkdf.parallel} threads"
        )
    role = "passphrase" if slot.type != "reencrypt" else "reencryption"
    return [str(slot.id), "recovery key" if info.recovery else role, slot.priority, cost]


def run_list(args: argparse.Namespace) -> int:
    target = resolve_volume(args.volume)
    header, slots = keys.list_keys(target)
    if args.json:
        print_json(
            {
                "volume": target.label,
                "uuid": header.uuid,
                "keyslots": [s.to_json() for s in slots],
            }
        )
        return 0
    print(format_table(["SLOT", "ROLE", "PRIORITY", "PBKDF"], [_slot_row(s) for s in slots]))
    return 0


def _authorised(
    args: argparse.Namespace, text: str, action: Callable[[VolumeTarget, Secret], T]
) -> T:
    """Check the current key (up to three prompts), then run `action` with it."""
    target = resolve_volume(args.volume)

    def checked(key: Secret) -> T:
        keys.check_key(target, key)
        return action(target, key)

    if args.recovery_key:
        return with_key(args.key_file, "Recovery key", checked, normalize=recovery.normalize)
    return with_key(args.key_file, text, checked)


def _with_new(args: argparse.Namespace, action: Callable[[Secret], T]) -> T:
    new = new_passphrase(args.new_key_file, "--new-key-file")
    try:
        return action(new)
    finally:
        new.wipe()


def run_add(args: argparse.Namespace) -> int:
    slot = _authorised(
        args,
        "Current passphrase",
        lambda target, key: _with_new(args, lambda new: keys.add_key(target, key, new)),
    )
    _done(args, {"action": "add", "keyslot": slot}, f"added a passphrase in keyslot {slot}")
    return 0


def run_change(args: argparse.Namespace) -> int:
    old, new = _authorised(
        args,
        "Passphrase to change",
        lambda target, key: _with_new(args, lambda n: keys.change_key(target, key, n)),
    )
    _done(
        args,
        {"action": "change", "old_keyslot": old, "keyslot": new},
        f"changed the passphrase of keyslot {old} (now in keyslot {new})",
    )
    return 0


def run_remove(args: argparse.Namespace) -> int:
    _authorised(
        args,
        "Passphrase of a keyslot you keep",
        lambda target, key: keys.remove_key(target, args.slot, key),
    )
    _done(args, {"action": "remove", "keyslot": args.slot}, f"removed keyslot {args.slot}")
    return 0


def run_recovery(args: argparse.Namespace) -> int:
    output = recovery_target(args)
    rotation = _authorised(
        args,
        "Current passphrase or recovery key",
        lambda target, key: keys.new_recovery_key(target, key, output),
    )
    try:
        replaced = f", keyslot {rotation.replaced} wiped" if rotation.replaced is not None else ""
        document: dict[str, object] = {
            "action": "recovery",
            "keyslot": rotation.keyslot,
            "replaced_keyslot": rotation.replaced,
            "recovery_key_file": str(output.path) if output.path else None,
        }
        if rotation.key is not None and args.json:
            document["recovery_key"] = rotation.key.reveal().decode()
        _done(args, document, f"new recovery key in keyslot {rotation.keyslot}{replaced}")
        if not args.json:
            print_recovery_key(rotation.key, output.path)
    finally:
        if rotation.key is not None:
            rotation.key.wipe()
    return 0


def _done(args: argparse.Namespace, document: dict[str, object], message: str) -> None:
    if args.json:
        print_json({"volume": args.volume, **document})
    else:
        print(f"{args.volume}: {message}")


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "key",
        help="list, add, change or remove passphrases",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="key_command", required=True, metavar="ACTION")
    for name, handler, summary in (
        ("list", run_list, "list keyslots"),
        ("add", run_add, "add a passphrase"),
        ("change", run_change, "replace a passphrase"),
        ("remove", run_remove, "wipe a keyslot"),
        ("recovery", run_recovery, "make a new recovery key, wiping the old one"),
    ):
        sub = actions.add_parser(
            name,
            help=summary,
            description=HELP,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        sub.add_argument("volume", metavar="NAME|DEVICE", help="volume name, device or UUID")
        sub.add_argument("--json", action="store_true", help="print a JSON report")
        if name != "list":
            add_key_file_option(sub)
            sub.add_argument(
                "--recovery-key",
                action="store_true",
                help="authorise with the recovery key (e.g. to set a new passphrase when "
                "the old one is lost)",
            )
        if name in ("add", "change"):
            add_key_file_option(sub, "--new-key-file")
        if name == "recovery":
            add_recovery_options(sub)
        if name == "remove":
            sub.add_argument("--slot", type=int, required=True, help="keyslot to wipe")
        sub.set_defaults(handler=handler)
