"""`imgvaultctl volume lock`: unmount and close a volume."""

import argparse

from imgvault.cli.commands import Subparsers
from imgvault.cli.output import print_json
from imgvault.volumes.lifecycle import lock_volume
from imgvault.volumes.resolve import resolve_volume

HELP = """\
Unmount the volume NAME (or DEVICE, or LUKS UUID) and close its mapping, so its data can only
be read again with a key. If processes have files open on it (or a working directory in it),
nothing is done and they are named. Locking a locked volume says "already locked" and exits 0.
Exit status 5: in use.

examples:
  imgvaultctl volume lock pacs-store
  imgvaultctl volume lock /dev/sdb --json
"""


def run_lock(args: argparse.Namespace) -> int:
    result = lock_volume(resolve_volume(args.volume))
    label = result.target.label
    if args.json:
        print_json(
            {
                "volume": label,
                "device": str(result.target.device),
                "state": "locked",
                "already": result.already,
                "unmounted": result.unmounted,
            }
        )
    elif result.already:
        print(f"{label}: already locked")
    else:
        unmounted = f" (unmounted {', '.join(result.unmounted)})" if result.unmounted else ""
        print(f"{label}: locked{unmounted}")
    return 0


def register(subparsers: Subparsers) -> None:
    parser = subparsers.add_parser(
        "lock",
        help="unmount and close a volume",
        description=HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("volume", metavar="NAME|DEVICE", help="volume name, device or UUID")
    parser.add_argument("--json", action="store_true", help="print a JSON report")
    parser.set_defaults(handler=run_lock)
