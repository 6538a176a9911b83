"""The recovery-key options and report shared by `volume format` and `volume key recovery`."""

import argparse
from pathlib import Path

from imgvault.errors import ImgvaultError
from imgvault.secret import Secret
from imgvault.volumes.recovery import RecoveryTarget


def add_recovery_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--recovery-key-file",
        type=Path,
        metavar="PATH",
        help="write the recovery key to this new 0600 file instead of printing it",
    )
    parser.add_argument(
        "--recovery-cert",
        type=Path,
        metavar="CERT",
        help="encrypt the recovery key to this RSA certificate (CMS, PEM) into --recovery-key-file",
    )


def recovery_target(args: argparse.Namespace) -> RecoveryTarget:
    if args.recovery_cert:
        if not args.recovery_key_file:
            raise ImgvaultError(
                "--recovery-cert needs --recovery-key-file OUT for the encrypted key",
                "add --recovery-key-file PATH.p7m",
            )
        return RecoveryTarget("certificate", args.recovery_key_file, args.recovery_cert)
    if args.recovery_key_file:
        return RecoveryTarget("file", args.recovery_key_file)
    return RecoveryTarget()


def print_recovery_key(key: Secret | None, written_to: Path | None) -> None:
    """Show a new recovery key once (or say where it went)."""
    if key is not None:
        print("\nRECOVERY KEY (shown once; write it down and store it away from this server):\n")
        print(f"    {key.reveal().decode()}\n")
    elif written_to is not None:
        print(f"  recovery key:  written to {written_to} (0600)")
