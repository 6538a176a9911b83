"""Getting passphrases from the admin: a terminal prompt without echo, or a key file
(`-` = stdin). Never argv or the environment. Key files are used byte for byte, as
`cryptsetup --key-file` does, so a key that works here works in crypttab too."""

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


class KeyInputError(ImgvaultError):
    pass


def add_key_file_option(parser: argparse.ArgumentParser, flag: str = "--key-file") -> None:
    parser.add_argument(
        flag,
        metavar="PATH",
        help="read the passphrase from PATH ('-': stdin), byte for byte, instead of a prompt; "
        "the file must not be readable by group or others",
    )


def read_key_file(path: str) -> Secret:
    if path == "-":
        return Secret(sys.stdin.buffer.read(MAX_KEY_FILE + 1)[: MAX_KEY_FILE + 1])
    file = Path(path)
    try:
        st = file.stat()
        if stat.S_ISREG(st.st_mode) and st.st_mode & 0o077:
            raise KeyInputError(
                f"key file {path} is readable or writable by group or others "
                f"(mode {stat.S_IMODE(st.st_mode):04o})",
                f"chmod 600 {path}",
            )
        secret = Secret(file.read_bytes())
    except OSError as error:
        raise KeyInputError(
            f"cannot read key file {path}: {error.strerror}", "check the path and run as root"
        ) from None
    if len(secret) > MAX_KEY_FILE:
        raise KeyInputError(f"key file {path} is larger than 8 MiB", "use a smaller key file")
    if len(secret) == 0:
        raise KeyInputError(f"key file {path} is empty", "give a file holding the key")
    return secret


def _need_terminal(what: str, flag: str) -> None:
    if not sys.stdin.isatty():
        raise KeyInputError(
            f"no terminal to ask for the {what}",
            f"run on a terminal, or give {flag} PATH ('-' reads stdin)",
        )


def prompt(text: str, flag: str = "--key-file") -> Secret:
    _need_terminal(text.lower(), flag)
    return Secret(getpass.getpass(f"{text}: "))


def new_passphrase(key_file: str | None, flag: str = "--key-file") -> Secret:
    """A new passphrase: from the key file, or typed twice at the terminal."""
    if key_file is not None:
        return read_key_file(key_file)
    _need_terminal("new passphrase", flag)
    first = Secret(getpass.getpass("New passphrase: "))
    if len(first) == 0:
        raise KeyInputError("the passphrase is empty", "type a non-empty passphrase")
    second = Secret(getpass.getpass("Repeat the new passphrase: "))
    try:
        if first != second:
            first.wipe()
            raise KeyInputError("the two passphrases differ", "run the command again")
    finally:
        second.wipe()
    return first


def with_key(
    key_file: str | None,
    text: str,
    action: Callable[[Secret], T],
    normalize: Callable[[Secret], Secret] | None = None,
) -> T:
    """Run `action` with an existing key: once from the key file, or up to three prompts at a
    terminal while the key is wrong."""
    for attempt in range(1, PROMPT_TRIES + 1):
        key = read_key_file(key_file) if key_file is not None else prompt(text)
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
