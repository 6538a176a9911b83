"""`imgvaultctl volume format`: encrypt a device as a new LUKS2 data volume."""

import argparse
import sys
from pathlib import Path

from imgvault.cli.commands import Subparsers
from imgvault.cli.interaction import add_key_file_option, confirm, new_passphrase
from imgvault.cli.output import print_json
from imgvault.cli.recovery_options import (
    add_recovery_options,
    print_recovery_key,
    recovery_target,
)
from imgvault.policy import load_policy
from imgvault.volumes.lifecycle import (
    FormatRequest,
    FormatResult,
    format_volume,
    inspect_for_format,
)

HELP = """\
Encrypt DEVICE as a LUKS2 volume with a cipher profile from the policy (default aes-128-xts:
aes-xts-plain64 with a 256-bit key, sha256, argon2id; aes-256-xts: 512-bit key), register it
under NAME, and back up its header (0600) to the policy's header backup directory.

Two keyslots are made: the first passphrase (typed twice, or --key-file) and a generated
recovery key (240 bits, eight groups of six characters). The recovery key is printed once,
or written to a new 0600 file (--recovery-key-file), or encrypted to a recipient's X.509
certificate as CMS (--recovery-cert CERT --recovery-key-file OUT; read it back with
'openssl cms -decrypt -binary -inform DER -in OUT -inkey KEY'). Store it away from the server.

Encryption sectors are 4096 bytes when the device writes 4096-byte physical sectors, else
512 (a larger sector could be torn by a power cut); --sector-size overrides.

The device must not be mounted or open. If it holds a file system, a partition table or a
LUKS header, format refuses unless --force is given and confirmed with "yes"
(or --yes). Everything on it is then lost.

examples:
  imgvaultctl volume format /dev/sdb --name pacs-store
  imgvaultctl volume format /dev/sdb --name pacs-store --profile aes-256-xts \\
      --recovery-key-file /root/pacs-store.recovery --mkfs ext4 --mount-point /srv/pacs
  imgvaultctl volume format /dev/sdc --name vna --key-file /root/vna.pass \\
      --recovery-cert escrow.pem --recovery-key-file vna-recovery.p7m --force --yes
"""


def _report(result: FormatResult, as_json: bool) -> None:
    record, header = result.record, result.header
    if as_json:
        document = {
            "volume": record.name,
            "device": record.device,
            "uuid": record.uuid,
            "profile": record.profile,
            "cipher_description": header.cipher_description,
            "sector_size": header.sector_size,
            "sector_size_reason": result.sector_size_reason,
            "keyslots": [slot.id for slot in header.keyslots],
            "recovery_keyslot": result.recovery_keyslot,
            "recovery_key_file": str(result.recovery_file) if result.recovery_file else None,
            "header_backup": str(result.header_backup),
            "filesystem": record.filesystem,
            "mountpoint": record.mountpoint,
        }
        if result.recovery_key is not None:
            document["recovery_key"] = result.recovery_key.reveal().decode()
        print_json(document)
        return
    print(f"Formatted {record.device} as volume {record.name} (LUKS2, UUID {record.uuid})")
    print(f"  cipher:        {header.cipher_description} (profile {record.profile})")
    print(f"  sector size:   {header.sector_size} ({result.sector_size_reason})")
    print(f"  keyslots:      0 passphrase, {result.recovery_keyslot} recovery key")
    print(f"  header backup: {result.header_backup}")
    if record.filesystem:
        print(f"  file system:   {record.filesystem}")
    if record.mountpoint:
        print(f"  mount point:   {record.mountpoint} (mounted by 'volume unlock')")
    print_recovery_key(result.recovery_key, result.recovery_file)


def run_format(args: argparse.Namespace) -> int:
    profile = load_policy().volumes.profile(args.profile)
    _, found = inspect_for_format(Path(args.device), args.force)
    if found:
        print(f"WARNING: {args.device} holds {'; '.join(found)}.", file=sys.stderr)
        confirm(f"Destroy it and format {args.device}?", assume_yes=args.yes)
    recovery = recovery_target(args)
    key = new_passphrase(args.key_file)
    try:
        result = format_volume(
            FormatRequest(
                device=Path(args.device),
                name=args.name,
                key=key,
                profile=profile,
                label=args.label,
                sector_size=args.sector_size,
                pbkdf_memory_kib=args.pbkdf_memory,
                force=args.force,
                recovery=recovery,
                mkfs=args.mkfs,
                mountpoint=args.mount_point,
            )
        )
    finally:
        key.wipe()
    try:
        _report(result, args.json)
    finally:
        if result.recovery_key is not None:
            result.recovery_key.wipe()
    return 0


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "format",
        help="encrypt a device as a new LUKS2 volume",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("device", metavar="DEVICE", help="block device to encrypt")
    parser.add_argument("--name", required=True, help="the volume's name (and mapping name)")
    parser.add_argument("--profile", help="cipher profile from the policy (default: its default)")
    parser.add_argument("--label", help="LUKS2 label (default: the name)")
    parser.add_argument("--sector-size", type=int, choices=(512, 4096), help="encryption sector")
    parser.add_argument(
        "--pbkdf-memory", type=int, metavar="KIB", help="argon2 memory cost (default: profile)"
    )
    add_key_file_option(parser)
    add_recovery_options(parser)
    parser.add_argument("--mkfs", choices=("ext4",), help="make a file system in the volume")
    parser.add_argument(
        "--mount-point", type=Path, metavar="DIR", help="where 'volume unlock' mounts it"
    )
    parser.add_argument("--force", action="store_true", help="format even if the device holds data")
    parser.add_argument("--yes", action="store_true", help="with --force: do not ask to confirm")
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.set_defaults(handler=run_format)
