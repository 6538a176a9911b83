"""`imgvaultctl volume crypttab`: boot-time unlock and mount entries for a data volume."""

import argparse
import sys
from pathlib import Path

from imgvault.cli.commands import Subparsers, add_command
from imgvault.cli.output import print_json
from imgvault.errors import ImgvaultError
from imgvault.volumes import cryptsetup
from imgvault.volumes.crypttab import (
    TabChange,
    apply_change,
    crypttab_entry,
    fstab_entry,
    plan_crypttab,
    plan_fstab,
)
from imgvault.volumes.resolve import resolve_volume

HELP = """\
Write or update the /etc/crypttab entry of a data volume (and its /etc/fstab entry when it has
a mount point), so that it is unlocked and mounted at boot:

  crypttab:  NAME  UUID=<luks uuid>  none|KEYFILE  luks,nofail,x-systemd.device-timeout=90s
  fstab:     /dev/mapper/NAME  MOUNTPOINT  FSTYPE
             defaults,nofail,x-systemd.device-timeout=90s,
             x-systemd.requires=systemd-cryptsetup@NAME.service  0  2

`nofail` keeps a missing or locked data disk from stopping the boot (the server comes up and
the volume can be unlocked later); the timeout bounds the wait for the disk. Key file `none`
(the default) asks for the passphrase at boot; a key file must be 0600 root.

Only this volume's lines are touched (matched by name or UUID, /dev/mapper path or mount
point); comments, other entries and layout are kept byte for byte; a line that claims the
same name or mount point for another device is refused, not overwritten. Files are replaced
atomically with their mode kept. Running it again changes nothing. --dry-run prints the
unified diff and writes nothing.

examples:
  imgvaultctl volume crypttab pacs-store --dry-run
  imgvaultctl volume crypttab pacs-store --mount-point /srv/pacs --timeout 2min
  imgvaultctl volume crypttab pacs-store --key-file /etc/imgvault/keys/pacs-store.key
"""


def run_crypttab(args: argparse.Namespace) -> int:
    target = resolve_volume(args.volume)
    name = args.name or (target.record.name if target.record else None)
    if name is None:
        raise ImgvaultError(
            f"{target.device} is not a registered volume, so it has no mapping name",
            "give one with --name NAME",
        )
    uuid = cryptsetup.luks_uuid(target.device)
    entry = crypttab_entry(name, uuid, args.key_file, args.timeout, args.discard)
    changes = [plan_crypttab(Path(args.crypttab), name, uuid, target.device, entry)]
    mountpoint = args.mount_point or (target.record.mountpoint if target.record else None)
    if mountpoint and not args.no_fstab:
        fstype = args.fstype or (target.record.filesystem if target.record else None) or "auto"
        line = fstab_entry(name, mountpoint, fstype, args.timeout)
        changes.append(plan_fstab(Path(args.fstab), name, mountpoint, line))
    written = [] if args.dry_run else [c.path for c in changes if apply_change(c)]
    if args.json:
        print_json(
            {
                "volume": name,
                "dry_run": args.dry_run,
                "files": [_report(c, c.path in written) for c in changes],
            }
        )
        return 0
    for change in changes:
        if not change.changed:
            print(f"{change.path}: already up to date")
        elif args.dry_run:
            sys.stdout.write(change.diff())
        else:
            print(f"{change.path}: updated")
    if mountpoint is None and not args.no_fstab:
        print("no mount point known: fstab left alone (give --mount-point DIR to add it)")
    return 0


def _report(change: TabChange, written: bool) -> dict[str, object]:
    return {
        "path": str(change.path),
        "changed": change.changed,
        "written": written,
        "diff": change.diff(),
    }


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "crypttab",
        help="write the crypttab/fstab entries that unlock and mount a volume at boot",
        description=HELP,
    )
    parser.add_argument("volume", metavar="NAME|DEVICE", help="registered name or device path")
    parser.add_argument("--name", help="mapping name (default: the registered name)")
    parser.add_argument(
        "--key-file", default="none", help="key file read at boot, or none (default: ask)"
    )
    parser.add_argument("--timeout", default="90s", help="x-systemd.device-timeout (default: 90s)")
    parser.add_argument("--discard", action="store_true", help="pass TRIM through (SSDs)")
    parser.add_argument("--mount-point", help="where to mount it (default: the registered one)")
    parser.add_argument("--fstype", help="file system type (default: the registered one, or auto)")
    parser.add_argument("--no-fstab", action="store_true", help="write the crypttab entry only")
    parser.add_argument("--crypttab", default="/etc/crypttab", help="default: /etc/crypttab")
    parser.add_argument("--fstab", default="/etc/fstab", help="default: /etc/fstab")
    parser.add_argument("--dry-run", action="store_true", help="print the diff, write nothing")
    parser.add_argument("--json", action="store_true", help="print a JSON document instead")
    parser.set_defaults(handler=run_crypttab)
