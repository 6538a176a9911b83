"""`imgvaultctl volume ...`: the LUKS2 data-volume lifecycle. One module per command here."""

import sys

from imgvault.cli.commands import Subparsers, add_command, register_all

HELP = """\
Provision, unlock and lock LUKS2 data volumes; manage their keys, header backups, re-encryption
and crypttab/fstab entries. Volumes are known by the name given at `volume format` (or by device
path or LUKS UUID). Every command accepts --json for a machine-readable report.
"""


def register(subparsers: Subparsers) -> None:
    parser = add_command(subparsers, "volume", help="manage LUKS2 data volumes", description=HELP)
    volume_commands = parser.add_subparsers(dest="volume_command", required=True, metavar="ACTION")
    register_all(sys.modules[__name__], volume_commands)
