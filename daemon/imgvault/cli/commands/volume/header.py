"""`imgvaultctl volume header backup|verify|restore`."""

import argparse
import sys
from pathlib import Path

from imgvault.cli.commands import Subparsers, add_command
from imgvault.cli.interaction import confirm
from imgvault.cli.output import print_json
from imgvault.policy import load_policy
from imgvault.volumes import cryptsetup
from imgvault.volumes.errors import DeviceMissingError
from imgvault.volumes.header_backup import backup_header, latest_backup
from imgvault.volumes.header_verify import (
    HeaderBackupError,
    HeaderComparison,
    compare_header,
    plan_restore,
)
from imgvault.volumes.registry import find_volume, load_registry
from imgvault.volumes.resolve import VolumeTarget, resolve_volume, update_record, utc_now

HELP = """\
A LUKS header holds the only wrapped copies of the volume key: if it is overwritten (a stray
mkfs, a failing sector) the data is lost even with the right passphrase. Keep a backup of it,
off the disk it describes, and make a new one after every key change ('imgvaultctl status'
flags volumes whose backup is missing or older than their last key change).

  backup   write the header to a new 0600 file in the policy's header_backup_dir
           (NAME.UUID.TIMESTAMP.luksheader) and record it in the registry
  verify   compare a backup with the device: UUID, volume key, keyslots, segments;
           exits 1 and lists each difference when they differ
  restore  write a backup over the device's header, after checking it is of this volume
           and wraps the volume key the data uses; asks for confirmation (--yes)

examples:
  imgvaultctl volume header backup pacs-store
  imgvaultctl volume header verify pacs-store            # against the latest backup
  imgvaultctl volume header restore /dev/sdb /srv/backups/pacs-store.<uuid>.<time>.luksheader
"""


def _backup_dir(args: argparse.Namespace) -> Path:
    return Path(args.dir) if args.dir else load_policy().volumes.header_backup_dir


def run_backup(args: argparse.Namespace) -> int:
    target = resolve_volume(args.volume)
    uuid = cryptsetup.luks_uuid(target.device)
    name = target.record.name if target.record else uuid
    path = backup_header(target.device, _backup_dir(args), name)
    if target.record:
        update_record(target.record.name, header_backup=str(path), header_backup_time=utc_now())
    if args.json:
        print_json(
            {
                "volume": target.label,
                "device": str(target.device),
                "uuid": uuid,
                "backup": str(path),
            }
        )
    else:
        print(f"header of {target.label} ({target.device}) backed up to {path}")
    return 0


def _chosen_backup(args: argparse.Namespace, target: VolumeTarget) -> Path:
    if args.backup:
        return Path(args.backup)
    if target.record and target.record.header_backup:
        return Path(target.record.header_backup)
    found = latest_backup(_backup_dir(args), cryptsetup.luks_uuid(target.device))
    if found is None:
        raise HeaderBackupError(
            f"no header backup of {target.label} found",
            "make one with 'imgvaultctl volume header backup', or name the file to compare",
        )
    return found


def _print_comparison(comparison: HeaderComparison) -> None:
    for difference in comparison.differences:
        print(f"  {difference.part}:")
        print(f"    backup: {difference.backup}")
        print(f"    device: {difference.device}")


def run_verify(args: argparse.Namespace) -> int:
    target = resolve_volume(args.volume)
    comparison = compare_header(_chosen_backup(args, target), target.device)
    if args.json:
        print_json(comparison.to_json())
    elif comparison.matches:
        print(f"{comparison.backup} matches the header of {target.label} ({target.device})")
    else:
        print(f"{comparison.backup} differs from the header of {target.label} ({target.device}):")
        _print_comparison(comparison)
        if comparison.same_volume and comparison.same_volume_key:
            print("make a new backup: 'imgvaultctl volume header backup' " + target.label)
    return 0 if comparison.matches else 1


def _restore_target(name_or_device: str) -> VolumeTarget:
    """Like `resolve`, without reading the header: restoring is for a header that is gone."""
    record = find_volume(load_registry(), name_or_device)
    device = Path(record.device if record else name_or_device)
    if not device.exists():
        raise DeviceMissingError(
            f"{device} does not exist", "check the path; 'imgvaultctl status' lists block devices"
        )
    return VolumeTarget(device=str(device), record=record)


def run_restore(args: argparse.Namespace) -> int:
    target = _restore_target(args.volume)
    backup = Path(args.backup)
    comparison = plan_restore(backup, target.device, force=args.force)
    if comparison is not None and comparison.matches:
        if args.json:
            print_json({"restored": False, "comparison": comparison.to_json()})
        else:
            print(f"the header of {target.label} already matches {backup}: nothing to restore")
        return 0
    if comparison is None:
        print(
            f"the header of {target.device} is unreadable; restoring {backup} unchecked",
            file=sys.stderr,
        )
    elif not args.json:
        print(f"restoring {backup} over the header of {target.label} changes:")
        _print_comparison(comparison)
    confirm(f"Overwrite the LUKS header of {target.device}?", assume_yes=args.yes)
    cryptsetup.header_restore(target.device, backup)
    if args.json:
        print_json({"restored": True, "comparison": comparison.to_json() if comparison else None})
    else:
        print(f"header of {target.label} ({target.device}) restored from {backup}")
    return 0


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers, "header", help="back up, verify and restore LUKS headers", description=HELP
    )
    actions = parser.add_subparsers(dest="header_command", required=True, metavar="ACTION")
    backup = actions.add_parser("backup", help="write a header backup file")
    verify = actions.add_parser("verify", help="compare a header backup with the device")
    restore = actions.add_parser("restore", help="write a header backup over the device's header")
    for sub in (backup, verify, restore):
        sub.add_argument("volume", metavar="NAME|DEVICE", help="registered name or device path")
        sub.add_argument("--json", action="store_true", help="print a JSON document instead")
    for sub in (backup, verify):
        sub.add_argument("--dir", help="backup directory (default: the policy's header_backup_dir)")
    verify.add_argument("backup", nargs="?", help="backup file (default: the latest one)")
    restore.add_argument("backup", help="backup file to restore")
    restore.add_argument("--yes", action="store_true", help="do not ask for confirmation")
    restore.add_argument(
        "--force",
        action="store_true",
        help="restore even a backup of another UUID or volume key, or over an unreadable header",
    )
    backup.set_defaults(handler=run_backup)
    verify.set_defaults(handler=run_verify)
    restore.set_defaults(handler=run_restore)
