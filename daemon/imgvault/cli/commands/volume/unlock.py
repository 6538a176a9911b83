"""`imgvaultctl volume unlock`: open a volume and mount it where it was registered to mount."""

import argparse

from imgvault.cli.commands import Subparsers
from imgvault.cli.interaction import add_key_file_option, with_key
from imgvault.cli.output import print_json
from imgvault.volumes import recovery
from imgvault.volumes.lifecycle import UnlockResult, open_mapping, unlock_volume
from imgvault.volumes.resolve import resolve_volume

HELP = """\
Open the volume NAME (or DEVICE, or LUKS UUID) as /dev/mapper/NAME and mount it on its
registered mount point. The passphrase is prompted without echo (three tries) or read from
--key-file; --recovery-key takes the recovery key instead (spaces, dashes and case do not
matter). --test only checks the key and changes nothing (works without device-mapper).

Unlocking an unlocked volume is not an error: it says "already unlocked" (and mounts it if it
is not mounted) and exits 0. Exit status 2: wrong key; 4: device missing.

examples:
  imgvaultctl volume unlock pacs-store
  imgvaultctl volume unlock pacs-store --key-file /root/pacs-store.key
  imgvaultctl volume unlock pacs-store --recovery-key --test
"""


def _report(result: UnlockResult, as_json: bool) -> None:
    label = result.target.label
    if as_json:
        print_json(
            {
                "volume": label,
                "device": str(result.target.device),
                "state": "tested" if result.tested_only else "unlocked",
                "already": result.already,
                "keyslot": result.keyslot,
                "mapping": str(result.mapping) if result.mapping else None,
                "mountpoint": result.mountpoint,
            }
        )
    elif result.tested_only:
        print(f"{label}: the key opens keyslot {result.keyslot} (nothing was changed)")
    else:
        state = "already unlocked" if result.already else "unlocked"
        where = f", mounted on {result.mountpoint}" if result.mountpoint else ""
        print(f"{label}: {state} as {result.mapping}{where}")


def run_unlock(args: argparse.Namespace) -> int:
    target = resolve_volume(args.volume)
    if not args.test and open_mapping(target.device) is not None:
        _report(unlock_volume(target, None), args.json)  # already open: no key to ask for
        return 0
    result = with_key(
        args.key_file,
        "Recovery key" if args.recovery_key else "Passphrase",
        lambda key: unlock_volume(target, key, test_only=args.test),
        normalize=recovery.normalize if args.recovery_key else None,
    )
    _report(result, args.json)
    return 0


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "unlock",
        help="open a volume and mount it",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("volume", metavar="NAME|DEVICE", help="volume name, device or UUID")
    add_key_file_option(parser)
    parser.add_argument(
        "--recovery-key", action="store_true", help="the key given is the recovery key"
    )
    parser.add_argument("--test", action="store_true", help="only check the key")
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.set_defaults(handler=run_unlock)
