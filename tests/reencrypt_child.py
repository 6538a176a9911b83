"""Child process for the interrupted re-encryption tests: runs the engine's re-encryption with
cheap test keyslots (and the registry record of DEVICE, if any) and prints each progress
report as a JSON line, so the test can SIGKILL it (and its cryptsetup) part-way through.

    python tests/reencrypt_child.py DEVICE KEY_BITS [HOTZONE_MIB]  (passphrases on stdin)

Small hot zones make the run take many steps, so that it can be caught part-way.
"""

import json
import sys

from imgvault.secret import Secret
from imgvault.volumes.luks import Pbkdf
from imgvault.volumes.reencrypt import Progress, Target, reencrypt_volume
from imgvault.volumes.registry import find_volume, load_registry


def main() -> None:
    device, key_bits = sys.argv[1], int(sys.argv[2])
    hotzone = int(sys.argv[3]) if len(sys.argv) > 3 else None
    keys = [Secret(line) for line in sys.stdin.read().splitlines()]
    target = Target(
        "aes-xts-plain64", key_bits, Pbkdf(kind="pbkdf2", iterations=1000), None, hotzone
    )

    def report(progress: Progress) -> None:
        print(json.dumps(progress.to_json()), flush=True)

    reencrypt_volume(device, keys, target, find_volume(load_registry(), device), report)


if __name__ == "__main__":
    main()
