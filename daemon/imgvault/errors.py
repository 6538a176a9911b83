"""The base of every error imgvault reports to an admin.

Each error carries a message that says what went wrong and a hint that says what to do, and an
exit code for the CLI. Messages never contain key material: callers pass secrets only as
`imgvault.secret.Secret`, whose repr is redacted.
"""


class ImgvaultError(Exception):
    """An error with an admin-facing message, a remedy and a CLI exit code."""

    exit_code = 1

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message}\n  hint: {self.hint}" if self.hint else self.message
