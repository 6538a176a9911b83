"""`imgvaultctl drive list | show DEV`: self-encrypting-drive (TCG) status and SMART health."""

import argparse

from imgvault.cli.commands import Subparsers
from imgvault.cli.output import format_table, human_size, print_json
from imgvault.devices.drives import DriveReport, list_drives, show_drive

HELP = """\
Report, for each physical drive, whether its hardware encryption protects anything and whether
it is healthy. The drive is asked natively (no sedutil): the kernel's sed-opal ioctls, or the
TCG Level 0 Discovery through NVMe Security Receive, SCSI SECURITY PROTOCOL IN or ATA TRUSTED
RECEIVE; health comes from SMART (smartctl, through pySMART).

SED kinds: Opal 2, Opal 1, Enterprise, Ruby, Opalite (they encrypt the media), Pyrite 1/2
(access control only: NO encryption), none (no TCG security protocol), unknown (with the
reason: not root, behind a USB bridge, a virtio disk, no answer).

Warnings name what to fix, e.g. "OPAL locking not enabled: hardware encryption gives no
protection at rest" (a factory-state SED encrypts, but unlocks itself at power-on for
anyone who holds the drive).
Run as root: drive queries need it.

examples:
  imgvaultctl drive list
  imgvaultctl drive show /dev/nvme0n1
  imgvaultctl drive list --json | jq '.drives[] | {path, sed: .sed.kind, health: .smart.health}'
"""


def _yes_no(value: bool | None) -> str:
    return "-" if value is None else ("yes" if value else "no")


def drive_row(drive: DriveReport) -> list[str]:
    """One table row; shared with `imgvaultctl status`."""
    identity = " / ".join(part for part in (drive.model, drive.serial) if part) or "-"
    return [
        drive.path,
        drive.bus,
        identity,
        drive.sed.summary(),
        _yes_no(drive.sed.locking_enabled),
        _yes_no(drive.sed.locked),
        drive.sed.mbr_shadow,
        drive.smart.health,
    ]


DRIVE_HEADERS = ["DRIVE", "BUS", "MODEL / SERIAL", "SED", "LOCKING", "LOCKED", "MBR", "HEALTH"]


def format_drive_table(drives: list[DriveReport]) -> str:
    """The drive table followed by one line per warning."""
    lines = [format_table(DRIVE_HEADERS, [drive_row(d) for d in drives])]
    lines += [f"warning: {d.path}: {w}" for d in drives for w in d.warnings]
    return "\n".join(lines)


def _run_list(args: argparse.Namespace) -> int:
    drives = list_drives()
    if args.json:
        print_json({"drives": [d.to_json() for d in drives]})
    else:
        print(format_drive_table(drives) if drives else "no drives found")
    return 0


def _detail(drive: DriveReport) -> str:
    smart, sed = drive.smart, drive.sed
    rows = [
        ("drive", drive.path),
        ("bus", drive.bus),
        ("size", human_size(drive.size_bytes)),
        ("model", drive.model or "-"),
        ("serial", drive.serial or "-"),
        ("firmware", smart.firmware or "-"),
        ("media", smart.media or "-"),
        ("SED", sed.summary()),
        ("media encryption", _yes_no(sed.media_encryption)),
        ("locking supported", _yes_no(sed.locking_supported)),
        ("locking enabled", _yes_no(sed.locking_enabled)),
        ("locked", _yes_no(sed.locked)),
        ("MBR shadow", sed.mbr_shadow),
        ("health", smart.health),
        ("temperature", "-" if smart.temperature_c is None else f"{smart.temperature_c} C"),
        ("power-on hours", "-" if smart.power_on_hours is None else str(smart.power_on_hours)),
        (
            "wear",
            "-"
            if smart.wear_percent_used is None
            else f"{smart.wear_percent_used}% used ({smart.wear_source})",
        ),
    ]
    probe = sed.probe
    if probe is not None:
        rows.append(("queried by", probe.transport))
        rows += [("", note) for note in probe.notes]
        if probe.discovery is not None:
            rows += [
                ("feature", f"0x{f.code:04x} {f.to_json()['name']} v{f.version}")
                for f in probe.discovery.features
            ]
    rows += [("warning", w) for w in drive.warnings]
    width = max(len(key) for key, _ in rows)
    return "\n".join(f"{key.ljust(width)}  {value}".rstrip() for key, value in rows)


def _run_show(args: argparse.Namespace) -> int:
    drive = show_drive(args.device)
    if args.json:
        print_json(drive.to_json())
    else:
        print(_detail(drive))
    return 0


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "drive",
        help="self-encrypting drive (TCG OPAL) status and SMART health",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser(
        "list",
        help="every drive: SED kind, locking, MBR shadow, health, warnings",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    listing.add_argument("--json", action="store_true", help="print a JSON document instead")
    listing.set_defaults(handler=_run_list)
    show = actions.add_parser(
        "show",
        help="one drive in detail: every TCG feature, how it was queried, SMART",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    show.add_argument("device", help="the whole drive, e.g. /dev/sda or /dev/nvme0n1")
    show.add_argument("--json", action="store_true", help="print a JSON document instead")
    show.set_defaults(handler=_run_show)
