"""The control socket's client side, used by `imgvaultctl daemon ...`."""

import errno
import socket
from pathlib import Path
from typing import Any

from imgvault import paths
from imgvault.control import protocol
from imgvault.errors import ImgvaultError

TIMEOUT = 30.0


def call(method: str, params: dict[str, Any] | None = None, path: Path | None = None) -> Any:
    """The result of `method` in the running imgvaultd; ImgvaultError with a remedy otherwise."""
    where = path or paths.control_socket()
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as connection:
        connection.settimeout(TIMEOUT)
        try:
            connection.connect(str(where))
            connection.sendall(protocol.encode({"method": method, "params": params or {}}))
            with connection.makefile("rb") as reader:
                line = reader.readline(protocol.MAX_LINE + 1)
        except (FileNotFoundError, ConnectionRefusedError):
            raise ImgvaultError(
                f"imgvaultd is not running (nothing listens on {where})",
                "systemctl start imgvaultd; systemctl status imgvaultd shows why it stopped",
            ) from None
        except PermissionError:
            raise ImgvaultError(
                f"permission denied on the control socket {where}",
                f"run as root, or as a member of group {protocol.GROUP}: usermod -aG "
                f"{protocol.GROUP} USER (then log in again)",
            ) from None
        except OSError as error:
            if error.errno == errno.ETIMEDOUT or isinstance(error, TimeoutError):
                raise ImgvaultError(
                    f"imgvaultd did not answer within {TIMEOUT:.0f} s", "journalctl -u imgvaultd"
                ) from None
            raise ImgvaultError(
                f"control socket {where}: {error.strerror or error}", "journalctl -u imgvaultd"
            ) from None
    try:
        response = protocol.decode(line)
    except protocol.ProtocolError as error:
        raise ImgvaultError(
            f"imgvaultd gave no valid answer ({error})", "journalctl -u imgvaultd"
        ) from None
    if not response.get("ok"):
        raise ImgvaultError(str(response.get("error")), str(response.get("hint") or ""))
    return response.get("result")
