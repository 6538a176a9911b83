"""Passphrases for the CLI: from a file or descriptor (`--passphrase-file /dev/fd/3`), or typed
at a terminal. Never from argv or the environment."""

from collections.abc import Callable
from pathlib import Path

from imgvault.cli.interaction import ask_new_passphrase, ask_passphrase
from imgvault.errors import ImgvaultError
from imgvault.secret import Secret

INSTEAD = "give --passphrase-file FILE (or /dev/fd/N from a pipe)"


def from_file(path: Path) -> Secret:
    """The first line of `path`, without its line ending."""
    try:
        with path.open("rb") as f:
            line = f.readline()
    except OSError as error:
        raise ImgvaultError(
            f"{path}: cannot read the passphrase file: {error.strerror}",
            "give a readable file (mode 0600) or /dev/fd/N",
        ) from None
    return Secret(line.rstrip(b"\r\n"))


def reader(path: Path | None, prompt: str, *, confirm: bool = False) -> Callable[[], Secret]:
    """A function that fetches the passphrase when (and only if) it is needed."""

    def read() -> Secret:
        if path is not None:
            return from_file(path)
        if confirm:
            return ask_new_passphrase(prompt, INSTEAD, allow_empty=True)
        return ask_passphrase(prompt, INSTEAD)

    return read
