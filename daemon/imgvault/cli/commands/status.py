"""`imgvaultctl status`: what is encrypted on this host, and how."""

import argparse

from imgvault import __version__
from imgvault.cli.commands import Subparsers, add_command
from imgvault.cli.commands.daemon import service_report, service_summary
from imgvault.cli.commands.drive import format_drive_table
from imgvault.cli.output import format_table, human_size, print_json
from imgvault.devices.drives import list_drives
from imgvault.devices.inventory import BlockDevice, list_block_devices
from imgvault.volumes.compliance import ComplianceCheck, Finding, format_findings

HELP = """\
List every block device with its size, model and serial, mount points and encryption:
LUKS1/LUKS2 with the cipher and key size spelled out (a 256-bit aes-xts-plain64 key is
AES-128-XTS, a 512-bit one AES-256-XTS), whether the volume is open and as which
/dev/mapper name, or "not encrypted". Open dm-crypt mappings are listed too.
Below the table, each LUKS volume that breaks the policy (weak cipher, LUKS1, low PBKDF2
iterations, no recovery key, too few keyslots, header backup missing or stale, re-encryption
interrupted) is listed with the command that fixes it (--json: "compliance" per device).

Then every physical drive: its self-encryption (SED kind: Opal 2, Opal 1, Enterprise, Pyrite,
none, unknown), whether locking is enabled, locked, the MBR shadow, SMART health, and policy
warnings (see `imgvaultctl drive --help`). Each drive query is bounded by a timeout.
Last, whether imgvaultd runs and which image stores it keeps encrypted (--json: "service";
details: `imgvaultctl daemon status`).

Run as root: reading LUKS headers and querying drives need it. Without root, both show as
"unknown".

examples:
  imgvaultctl status
  imgvaultctl status --json | jq '.devices[] | select(.encrypted) | .encryption.cipher_description'
  imgvaultctl status --json | jq '.drives[] | {path, sed: .sed.kind, warnings}'
"""


# Seconds per smartctl call in `status`: a hung drive must not hang the overview.
STATUS_SMART_TIMEOUT = 5.0


def _row(device: BlockDevice) -> list[str]:
    identity = " / ".join(part for part in (device.model, device.serial) if part)
    if device.backing_file:
        identity = f"file {device.backing_file}"
    return [
        device.path,
        human_size(device.size_bytes),
        device.kind,
        identity or "-",
        "\n".join(device.mountpoints) or "-",
        device.encryption_summary(),
    ]


def run_status(args: argparse.Namespace) -> int:
    devices = list_block_devices()
    findings: dict[str, list[Finding]] = {}
    encrypted = [(d.path, d.encryption) for d in devices if d.encryption is not None]
    if encrypted:  # only then: reading the registry may need root
        compliance = ComplianceCheck()
        findings = {path: compliance.check(header, path) for path, header in encrypted}
    drives = list_drives(smart_timeout=STATUS_SMART_TIMEOUT)
    service = service_report()
    if args.json:
        print_json(
            {
                "version": __version__,
                "devices": [
                    {**d.to_json(), "compliance": [f.to_json() for f in findings.get(d.path, [])]}
                    for d in devices
                ],
                "drives": [d.to_json() for d in drives],
                "service": service,
            }
        )
        return 0
    headers = ["DEVICE", "SIZE", "TYPE", "MODEL / SERIAL", "MOUNTED ON", "ENCRYPTION"]
    print(format_table(headers, [_row(d) for d in devices]))
    print(format_findings(findings))
    if drives:
        print()
        print(format_drive_table(drives))
    print()
    print(service_summary(service))
    return 0


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "status",
        help="show block devices and their encryption",
        description=HELP,
        json_output=True,
    )
    parser.set_defaults(handler=run_status)
