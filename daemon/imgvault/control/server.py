"""The control socket's server side, run by `imgvaultd`.

Every connection is authorised from SO_PEERCRED (the uid and gid the kernel recorded for the
connecting process), then answered on its own thread: one request, one response. File
permissions (socket 0660 root:imgvault in a 0750 root:imgvault directory) keep others out
already; the credential check holds even if those permissions are loosened by mistake.
"""

import grp
import logging
import os
import pwd
import socket
import stat
import struct
import threading
from collections.abc import Callable
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgvault.control import protocol
from imgvault.errors import ImgvaultError

log = logging.getLogger("imgvault.control")

Handler = Callable[[dict[str, Any]], dict[str, Any]]
_UCRED = struct.Struct("3i")  # struct ucred: pid, uid, gid
REQUEST_TIMEOUT = 5.0
MAX_CONNECTIONS = 16  # answered at once; more are closed unanswered until one finishes


@dataclass(frozen=True)
class Method:
    handler: Handler
    admin: bool  # True: root only; False: root and members of the control group


@dataclass(frozen=True)
class Peer:
    pid: int
    uid: int
    gid: int

    @property
    def user(self) -> str:
        try:
            return pwd.getpwuid(self.uid).pw_name
        except KeyError:
            return f"uid {self.uid}"

    def in_group(self, gid: int | None) -> bool:
        """Primary group from the kernel, supplementary groups from the user database (what
        `usermod -aG` changes), as `id USER` shows them."""
        if gid is None:
            return False
        if self.gid == gid:
            return True
        try:
            return gid in os.getgrouplist(pwd.getpwuid(self.uid).pw_name, self.gid)
        except KeyError:
            return False


def peer_of(connection: socket.socket) -> Peer:
    raw = connection.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _UCRED.size)
    return Peer(*_UCRED.unpack(raw))


class ControlServer:
    """Serves `methods` on a Unix socket at `path` until `stop()`."""

    def __init__(
        self, path: Path, methods: dict[str, Method], *, group: str = protocol.GROUP
    ) -> None:
        self.path = path
        self.methods = methods
        self.group = group
        try:
            self._gid: int | None = grp.getgrnam(group).gr_gid
        except KeyError:
            self._gid = None
        self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        self._thread = threading.Thread(target=self._serve, name="control", daemon=True)
        self._stopping = threading.Event()
        self._slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def start(self) -> None:
        """Bind (replacing a stale socket, never another kind of file) and start serving."""
        self.path.parent.mkdir(mode=0o750, parents=True, exist_ok=True)
        with suppress(FileNotFoundError):
            if stat.S_ISSOCK(self.path.lstat().st_mode):
                if _listening(self.path):
                    raise ImgvaultError(
                        f"another imgvaultd answers on {self.path}",
                        "systemctl status imgvaultd; run one imgvaultd only",
                    )
                self.path.unlink()  # left by a daemon that was killed
        old_umask = os.umask(0o177)  # created 0600: nobody can connect before the chmod below
        try:
            self._socket.bind(str(self.path))
        except OSError as error:
            raise ImgvaultError(
                f"cannot create the control socket {self.path}: {error.strerror}",
                "another imgvaultd may be running (systemctl status imgvaultd), or remove the "
                "file if it is not a socket",
            ) from None
        finally:
            os.umask(old_umask)
        if self._gid is None:
            log.warning(
                "group %s does not exist: the control socket is for root only "
                "(systemd-sysusers creates the group)",
                self.group,
            )
        else:
            os.chown(self.path, 0, self._gid)
            self.path.chmod(0o660)
        self._socket.listen(16)
        self._socket.settimeout(0.5)  # so that stop() is noticed
        self._thread.start()

    def stop(self) -> None:
        self._stopping.set()
        self._thread.join()
        self._socket.close()
        self.path.unlink(missing_ok=True)

    def _serve(self) -> None:
        while not self._stopping.is_set():
            try:
                connection, _ = self._socket.accept()
            except TimeoutError:
                continue
            if not self._slots.acquire(blocking=False):
                connection.close()  # a flood of connections must not cost a thread each
                continue
            threading.Thread(
                target=self._answer, args=(connection,), name="control-request", daemon=True
            ).start()

    def _answer(self, connection: socket.socket) -> None:
        try:
            with connection:
                connection.settimeout(REQUEST_TIMEOUT)
                with connection.makefile("rb") as reader:
                    line = reader.readline(protocol.MAX_LINE + 1)
                response = self._respond(peer_of(connection), line)
                connection.sendall(protocol.encode(response))
        except OSError as error:  # the client went away or timed out: nothing to answer
            log.info("control connection dropped: %s", error.strerror or error)
        finally:
            self._slots.release()

    def _respond(self, peer: Peer, line: bytes) -> dict[str, Any]:
        try:
            request = protocol.decode(line)
        except protocol.ProtocolError as error:
            return _refusal(f"malformed request: {error}", "use imgvaultctl daemon ...")
        name = request.get("method")
        method = self.methods.get(name) if isinstance(name, str) else None
        if method is None:
            return _refusal(
                f"unknown method {name!r}", f"methods: {', '.join(sorted(self.methods))}"
            )
        allowed = peer.uid == 0 or (not method.admin and peer.in_group(self._gid))
        if not allowed:
            # The method name, the user and the pid: never the parameters.
            log.warning("refused %s from %s (pid %d)", name, peer.user, peer.pid)
            who = "root" if method.admin else f"root or a member of group {self.group}"
            return _refusal(
                f"permission denied: {name} is for {who}, and {peer.user} is not",
                "run it as root"
                if method.admin
                else f"run it as root, or: usermod -aG {self.group} {peer.user} (then log in "
                "again)",
            )
        params = request.get("params") or {}
        if not isinstance(params, dict):
            return _refusal("malformed request: params is not an object", "")
        try:
            return {"ok": True, "result": method.handler(params)}
        except ImgvaultError as error:
            return _refusal(error.message, error.hint)
        except Exception:  # a bug must not take the socket down; the journal gets the trace
            log.exception("control method %s failed", name)
            return _refusal(f"{name} failed inside imgvaultd", "see journalctl -u imgvaultd")


def _listening(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
        return True


def _refusal(error: str, hint: str) -> dict[str, Any]:
    return {"ok": False, "error": error, "hint": hint}
