"""Asking the admin: confirmations for destructive steps and passphrases without echo.

Passphrases come from a key file (`-` = stdin) or the terminal, never argv or environment, and
are held as `Secret`s. Without a terminal a confirmation is refused, not assumed: scripts say
`--yes`.
"""

import getpass
import sys
from pathlib import Path

from imgvault.errors import ImgvaultError
from imgvault.secret import Secret


class NotConfirmedError(ImgvaultError):
    pass


def confirm(question: str, *, assume_yes: bool) -> None:
    """Ask `question` on the terminal; anything but "yes" aborts with nothing changed."""
    if assume_yes:
        return
    if not sys.stdin.isatty():
        raise NotConfirmedError(
            f"{question} needs a confirmation and there is no terminal to ask on",
            "repeat with --yes once you are sure",
        )
    answer = input(f"{question} Type 'yes' to continue: ")
    if answer.strip().lower() != "yes":
        raise NotConfirmedError("not confirmed: nothing was changed")


def read_key_file(path: str) -> Secret:
    """A key file's exact bytes (`-`: all of stdin), as a Secret."""
    try:
        data = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as error:
        raise ImgvaultError(
            f"cannot read key file {path}: {error.strerror}",
            "check the path and that you run as root (key files are 0600 root)",
        ) from None
    return Secret(data)


def ask_passphrase(prompt: str) -> Secret:
    if not sys.stdin.isatty():
        raise ImgvaultError(
            "a passphrase is needed and there is no terminal to ask on",
            "pass it with --key-file PATH (or --key-file - to read it from stdin)",
        )
    return Secret(getpass.getpass(prompt))
