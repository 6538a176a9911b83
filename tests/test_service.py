"""imgvaultd speaks the systemd notify protocol (Type=notify) and stops cleanly on SIGTERM.

The notify socket is bound by the test itself: outside a systemd-booted system that is the only
honest way to see what the service sends."""

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path


def test_ready_then_stopping_on_sigterm(tmp_path: Path) -> None:
    sock_path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(sock_path))
        notify.settimeout(30)
        env = {**os.environ, "NOTIFY_SOCKET": str(sock_path)}
        daemon = subprocess.Popen(
            [sys.executable, "-m", "imgvault.service.main"],
            env=env,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            ready = notify.recv(4096).decode()
            assert "READY=1" in ready.splitlines()
            assert "STATUS=imgvaultd" in ready
            daemon.send_signal(signal.SIGTERM)
            assert "STOPPING=1" in notify.recv(4096).decode().splitlines()
            assert daemon.wait(timeout=30) == 0
        finally:
            daemon.kill()
            stderr = daemon.stderr.read() if daemon.stderr else ""
    assert "block devices" in stderr
    assert "received SIGTERM, stopping" in stderr


def test_version_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "imgvault.service.main", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("imgvaultd ")
