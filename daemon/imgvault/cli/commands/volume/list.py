"""`imgvaultctl volume list`: the registered volumes and whether they are open."""

import argparse

from imgvault.cli.commands import Subparsers
from imgvault.cli.output import format_table, print_json
from imgvault.volumes.lifecycle import VolumeState, list_volumes

HELP = """\
List the volumes registered with 'volume format': name, device (found by LUKS UUID), profile,
state (locked, unlocked, "unlocked, mounted", or missing when no attached device has its
UUID), mount point (where it is mounted, else where 'volume unlock' mounts it) and recovery
keyslot.

examples:
  imgvaultctl volume list
  imgvaultctl volume list --json | jq '.volumes[] | select(.state == "unlocked") | .name'
"""


def _json(state: VolumeState) -> dict[str, object]:
    record = state.record
    return {
        "name": record.name,
        "uuid": record.uuid,
        "device": state.device,
        "registered_device": record.device,
        "profile": record.profile,
        "state": state.state,
        "mapping": state.mapping,
        "mounted_on": state.mounted_on,
        "mountpoint": record.mountpoint,
        "recovery_keyslot": record.recovery_keyslot,
        "last_key_change": record.last_key_change,
        "header_backup_time": record.header_backup_time,
    }


def run_list(args: argparse.Namespace) -> int:
    states = list_volumes()
    if args.json:
        print_json({"volumes": [_json(s) for s in states]})
        return 0
    if not states:
        print("no volumes registered ('imgvaultctl volume format' creates one)")
        return 0
    rows = [
        [
            s.record.name,
            s.device or f"({s.record.device})",
            s.record.profile,
            f"{s.state}, mounted" if s.mounted_on else s.state,
            "\n".join(s.mounted_on) or s.record.mountpoint or "-",
            "-" if s.record.recovery_keyslot is None else str(s.record.recovery_keyslot),
        ]
        for s in states
    ]
    headers = ["NAME", "DEVICE", "PROFILE", "STATE", "MOUNT POINT", "RECOVERY SLOT"]
    print(format_table(headers, rows))
    return 0


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "list",
        help="list registered volumes and their state",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--json", action="store_true", help="print a JSON document instead")
    parser.set_defaults(handler=run_list)
