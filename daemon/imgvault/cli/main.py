"""Entry point of `imgvaultctl`: builds the parser from `imgvault.cli.commands` and maps errors
to a one-line message with a hint on stderr and a non-zero exit code."""

import argparse
import os
import sys
from collections.abc import Sequence

from imgvault import __version__
from imgvault.cli import commands
from imgvault.cli.commands import register_all
from imgvault.errors import ImgvaultError
from imgvault.secret import harden_process

DESCRIPTION = """\
imgvaultctl manages encryption on a medical-imaging server: LUKS2 data volumes,
self-encrypting drives, file-level encryption of image stores and DICOM de-identification.

Every command prints a human-readable report; add --json for a stable machine-readable one.
Exit status: 0 on success, 1 on a reported error, 2 on a usage error, 69 when a required system
tool is missing (run scripts/bootstrap).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgvaultctl",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"imgvaultctl {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    register_all(commands, subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    harden_process()
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args))
    except ImgvaultError as error:
        print(f"imgvaultctl: error: {error}", file=sys.stderr)
        return error.exit_code
    except KeyboardInterrupt:
        print("imgvaultctl: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        # The reader (e.g. `| head`) went away: not an error worth a traceback.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
