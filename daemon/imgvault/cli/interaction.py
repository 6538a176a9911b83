"""Asking the admin: confirmations for destructive steps and passphrases without echo.

Passphrases come from a key file (`-` = stdin) or the terminal, never argv or environment, and
are held as `Secret`s. Without a terminal a confirmation is refused, not assumed: scripts say
`--yes`.
"""

import argparse
import getpass
import stat
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from imgvault.errors import ImgvaultError
from imgvault.secret import Secret
from imgvault.volumes.errors import WrongKeyError

MAX_KEY_FILE = 8192 * 1024  # cryptsetup's default --keyfile-size limit
PROMPT_TRIES = 3
T = TypeVar("T")


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
    """A key file's exact bytes (`-`: all of stdin), as `cryptsetup --key-file` reads it, so a
    key that works here works in crypttab too. A file others can read is refused."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(MAX_KEY_FILE + 1)
        else:
            mode = Path(path).stat().st_mode
            if stat.S_ISREG(mode) and mode & 0o077:
                raise ImgvaultError(
                    f"key file {path} is readable or writable by group or others "
                    f"(mode {stat.S_IMODE(mode):04o})",
                    f"chmod 600 {path}",
                )
            data = Path(path).read_bytes()
    except OSError as error:
        raise ImgvaultError(
            f"cannot read key file {path}: {error.strerror}",
            "check the path and that you run as root (key files are 0600 root)",
        ) from None
    if len(data) > MAX_KEY_FILE:
        raise ImgvaultError(f"key file {path} is larger than 8 MiB", "use a smaller key file")
    if not data:
        raise ImgvaultError(f"key file {path} is empty", "give a file holding the key")
    return Secret(data)


def key_file_hint(flag: str) -> str:
    """How to give a key instead of typing it, for options that read key files (`-`: stdin)."""
    return f"pass it with {flag} PATH (or {flag} - to read it from stdin)"


def ask_passphrase(prompt: str, instead: str = key_file_hint("--key-file")) -> Secret:
    """A passphrase typed without echo; without a terminal, an error whose hint is `instead`."""
    if not sys.stdin.isatty():
        raise ImgvaultError("a passphrase is needed and there is no terminal to ask on", instead)
    return Secret(getpass.getpass(prompt))


def add_key_file_option(parser: argparse.ArgumentParser, flag: str = "--key-file") -> None:
    parser.add_argument(
        flag,
        metavar="PATH",
        help="read the passphrase from PATH ('-': stdin), byte for byte, instead of a prompt; "
        "the file must not be readable by group or others",
    )


def ask_new_passphrase(
    prompt: str = "New passphrase: ",
    instead: str = key_file_hint("--key-file"),
    *,
    allow_empty: bool = False,
) -> Secret:
    """A new passphrase typed twice at the terminal, so a typo cannot lock data away."""
    first = ask_passphrase(prompt, instead)
    if len(first) == 0 and not allow_empty:
        raise ImgvaultError("the passphrase is empty", "type a non-empty passphrase")
    second = Secret(getpass.getpass("Repeat the new passphrase: "))
    try:
        if first != second:
            first.wipe()
            raise ImgvaultError("the two passphrases differ", "run the command again")
    finally:
        second.wipe()
    return first


def new_passphrase(key_file: str | None, flag: str = "--key-file") -> Secret:
    """A new passphrase: from the key file, or typed twice at the terminal."""
    if key_file is not None:
        return read_key_file(key_file)
    return ask_new_passphrase(instead=key_file_hint(flag))


def with_key(
    key_file: str | None,
    text: str,
    action: Callable[[Secret], T],
    normalize: Callable[[Secret], Secret] | None = None,
) -> T:
    """Run `action` with an existing key: once from the key file, or up to three prompts at a
    terminal while the key is wrong."""
    for attempt in range(1, PROMPT_TRIES + 1):
        key = read_key_file(key_file) if key_file is not None else ask_passphrase(f"{text}: ")
        try:
            if normalize is not None:
                typed, key = key, normalize(key)
                typed.wipe()
            return action(key)
        except WrongKeyError as error:
            if key_file is not None:
                raise
            if attempt == PROMPT_TRIES:
                raise WrongKeyError(f"{error.message} ({PROMPT_TRIES} tries)", error.hint) from None
            print(f"No key available with this {text.lower()}; try again.", file=sys.stderr)
        finally:
            key.wipe()
    raise AssertionError("unreachable")
