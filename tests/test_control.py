"""The control socket: who may ask what is decided by the kernel's credentials of the caller
(SO_PEERCRED), bad requests get clear answers and never take the server down.

Other users are real: clients run as `nobody` (primary group `nogroup`) in a subprocess, so
these tests need root (the loop tier runs as root)."""

import grp
import json
import os
import pwd
import socket
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from imgvault.control import client
from imgvault.control.server import ControlServer, Method
from imgvault.errors import ImgvaultError

pytestmark = pytest.mark.loop  # runs clients as another user: needs root


def _status(_params: dict[str, Any]) -> dict[str, Any]:
    return {"stores": []}


def _rescan(params: dict[str, Any]) -> dict[str, Any]:
    return {"started": [], "asked": params}


def _broken(_params: dict[str, Any]) -> dict[str, Any]:
    raise RuntimeError("a bug")


METHODS = {
    "status": Method(_status, admin=False),
    "rescan": Method(_rescan, admin=True),
    "broken": Method(_broken, admin=False),
}


@pytest.fixture
def run_dir() -> Iterator[Path]:
    """A directory other users can reach (pytest's tmp_path is root-only)."""
    directory = Path(tempfile.mkdtemp(prefix="imgvault-control-"))
    directory.chmod(0o755)
    try:
        yield directory
    finally:
        for child in directory.iterdir():
            child.unlink()
        directory.rmdir()


def serve(run_dir: Path, group: str) -> ControlServer:
    server = ControlServer(run_dir / "control.sock", METHODS, group=group)
    server.start()
    return server


def call_as_nobody(path: Path, method: str) -> dict[str, Any]:
    """`client.call` from a forked process that dropped to nobody:nogroup (no supplementary
    groups), as a real other user: its result or its error."""
    nobody = pwd.getpwnam("nobody")
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(read_end)
            os.setgroups([])
            os.setgid(nobody.pw_gid)
            os.setuid(nobody.pw_uid)
            try:
                answer = {"result": client.call(method, path=path)}
            except ImgvaultError as error:
                answer = {"error": error.message, "hint": error.hint}
            os.write(write_end, json.dumps(answer).encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end, "rb") as pipe:
        output = pipe.read()
    os.waitpid(pid, 0)
    answer: dict[str, Any] = json.loads(output)
    return answer


def test_group_members_may_read_and_only_root_may_change(run_dir: Path) -> None:
    server = serve(run_dir, group="nogroup")
    try:
        st = server.path.stat()
        assert stat.S_ISSOCK(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o660
        assert (st.st_uid, st.st_gid) == (0, grp.getgrnam("nogroup").gr_gid)
        assert client.call("rescan", {"store": "pacs"}, path=server.path) == {
            "started": [], "asked": {"store": "pacs"}
        }  # fmt: skip
        assert call_as_nobody(server.path, "status") == {"result": {"stores": []}}
        refused = call_as_nobody(server.path, "rescan")
        assert refused["error"] == "permission denied: rescan is for root, and nobody is not"
        assert refused["hint"] == "run it as root"
    finally:
        server.stop()
    assert not server.path.exists()


def test_the_credential_check_holds_when_the_socket_is_left_open_to_all(run_dir: Path) -> None:
    """Defence in depth: even a socket chmod 0666 by mistake answers nobody with a refusal."""
    server = serve(run_dir, group="daemon")  # nobody is not a member
    try:
        server.path.chmod(0o666)
        refused = call_as_nobody(server.path, "status")
        assert (
            "permission denied: status is for root or a member of group daemon"
            in (refused["error"])
        )
        assert "usermod -aG daemon nobody" in refused["hint"]
    finally:
        server.stop()


def test_without_the_group_the_socket_is_root_only(run_dir: Path) -> None:
    server = serve(run_dir, group="imgvault-no-such-group")
    try:
        assert stat.S_IMODE(server.path.stat().st_mode) == 0o600
        refused = call_as_nobody(server.path, "status")
        assert refused["error"].startswith("permission denied on the control socket")
        assert "usermod -aG imgvault" in refused["hint"]
        assert client.call("status", path=server.path) == {"stores": []}
    finally:
        server.stop()


def raw_request(path: Path, payload: bytes) -> dict[str, Any]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.connect(str(path))
        connection.sendall(payload)
        connection.shutdown(socket.SHUT_WR)
        answer: dict[str, Any] = json.loads(connection.makefile("rb").readline())
        return answer


def test_bad_requests_get_clear_answers_and_the_server_goes_on(run_dir: Path) -> None:
    server = serve(run_dir, group="nogroup")
    try:
        answers = [
            raw_request(server.path, b"not json\n"),
            raw_request(server.path, b"[1, 2]\n"),
            raw_request(server.path, b'{"method": "status"'),  # no newline: cut short
            raw_request(server.path, b"x" * 100_000 + b"\n"),
            raw_request(server.path, b'{"method": "format-everything"}\n'),
            raw_request(server.path, b'{"method": "status", "params": [1]}\n'),
            raw_request(server.path, b'{"method": "broken"}\n'),
        ]
        assert all(a["ok"] is False for a in answers)
        assert [a["error"].split(":")[0] for a in answers[:4]] == ["malformed request"] * 4
        assert answers[4]["error"] == "unknown method 'format-everything'"
        assert "broken, rescan, status" in answers[4]["hint"]
        assert answers[5]["error"] == "malformed request: params is not an object"
        assert answers[6] == {
            "ok": False, "error": "broken failed inside imgvaultd",
            "hint": "see journalctl -u imgvaultd",
        }  # fmt: skip
        assert client.call("status", path=server.path) == {"stores": []}
    finally:
        server.stop()


def test_a_second_server_refuses_to_take_over_a_live_socket(run_dir: Path) -> None:
    server = serve(run_dir, group="nogroup")
    try:
        with pytest.raises(ImgvaultError, match="another imgvaultd answers"):
            serve(run_dir, group="nogroup")
        assert client.call("status", path=server.path) == {"stores": []}
    finally:
        server.stop()


def test_a_stale_socket_is_replaced_and_no_daemon_is_a_clear_error(run_dir: Path) -> None:
    stale = run_dir / "control.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as dead:
        dead.bind(str(stale))  # bound, never listening: what a killed daemon leaves
    with pytest.raises(ImgvaultError, match="imgvaultd is not running") as caught:
        client.call("status", path=stale)
    assert "systemctl start imgvaultd" in caught.value.hint
    server = serve(run_dir, group="nogroup")
    try:
        assert client.call("status", path=server.path) == {"stores": []}
    finally:
        server.stop()
