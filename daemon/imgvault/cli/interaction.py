"""Confirmations for destructive steps. Without a terminal a confirmation is refused, not
assumed: scripts say `--yes`."""

import sys

from imgvault.errors import ImgvaultError


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
