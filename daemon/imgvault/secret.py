"""Key material in memory, and the process hardening that keeps it out of core files.

Secrets are held as a `bytearray` so they can be wiped, and their repr/str is redacted so a
secret that reaches a log line, an exception or a traceback prints as `<redacted>`.
"""

import ctypes
import ctypes.util
import resource

_PR_SET_DUMPABLE = 4


class Secret:
    """A passphrase or key. Use `reveal()` only at the point where it is handed to a consumer."""

    __slots__ = ("_value",)

    def __init__(self, value: bytes | bytearray | str) -> None:
        raw = value.encode() if isinstance(value, str) else value
        self._value = bytearray(raw)

    def reveal(self) -> bytes:
        return bytes(self._value)

    def wipe(self) -> None:
        self._value[:] = b"\0" * len(self._value)
        self._value.clear()

    def __len__(self) -> int:
        return len(self._value)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and self._value == other._value

    __hash__ = None  # type: ignore[assignment]  # mutable and secret: never a dict key

    def __repr__(self) -> str:
        return "Secret(<redacted>)"

    __str__ = __repr__

    def __reduce__(self) -> None:  # type: ignore[override]
        raise TypeError("a Secret is never pickled")


def harden_process() -> None:
    """Forbid core dumps and ptrace attach by other non-root users for this process.

    Called first thing by `imgvaultd` and `imgvaultctl`, because both hold passphrases.
    """
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    libc_name = ctypes.util.find_library("c")
    if libc_name:
        libc = ctypes.CDLL(libc_name, use_errno=True)
        libc.prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)
