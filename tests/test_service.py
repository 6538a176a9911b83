"""imgvaultd speaks the systemd notify protocol (Type=notify), keeps registered stores
encrypted and stops cleanly on SIGTERM.

The notify socket is bound by the test itself: outside a systemd-booted system that is the only
honest way to see what the service sends."""

import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from imgvault.cli.main import main as cli_main
from imgvault.filecrypt.inplace import is_encrypted
from imgvault.filecrypt.stores import Store, StoreRegistry


@contextmanager
def running_daemon(tmp_path: Path, **env: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """imgvaultd with a notify socket and a control-socket directory of our own; yields it once
    READY=1 came, with that message. The test sends SIGTERM itself; the daemon is killed if it
    is still running."""
    sock_path = tmp_path / "notify.sock"
    env = {"IMGVAULT_RUNTIME_DIR": str(tmp_path / "run"), **env}
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(sock_path))
        notify.settimeout(30)
        daemon = subprocess.Popen(
            [sys.executable, "-m", "imgvault.service.main"],
            env={**os.environ, "NOTIFY_SOCKET": str(sock_path), **env},
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            ready = notify.recv(4096).decode()
            assert "READY=1" in ready.splitlines()
            yield daemon, ready
            while "STOPPING=1" not in notify.recv(4096).decode().splitlines():
                pass  # STATUS= updates (after a rescan) may come first
        finally:
            daemon.kill()
            daemon.wait()


def test_ready_then_stopping_on_sigterm(tmp_path: Path) -> None:
    with running_daemon(tmp_path, IMGVAULT_STATE_DIR=str(tmp_path / "state")) as (daemon, ready):
        assert "STATUS=imgvaultd" in ready
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    stderr = daemon.stderr.read() if daemon.stderr else ""
    assert "block devices" in stderr
    assert "no image stores registered" in stderr
    assert "received SIGTERM, stopping" in stderr


def ctl_json(capsys: pytest.CaptureFixture[str], *argv: str) -> Any:
    capsys.readouterr()
    assert cli_main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_keeps_registered_stores_encrypted_and_reports_unwatchable_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    demo = tmp_path / "demo"
    assert cli_main(["demo", "--dir", str(demo), "--files", "1", "--json"]) == 0
    registry = StoreRegistry(demo / "state" / "filecrypt-stores.json")
    registry.save(Store("unmounted", tmp_path / "not-mounted", ["demo-service"]))
    monkeypatch.setenv("IMGVAULT_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("IMGVAULT_STATE_DIR", str(demo / "state"))
    with running_daemon(tmp_path, IMGVAULT_STATE_DIR=str(demo / "state")) as (daemon, ready):
        assert "watching 1 store(s), 1 not watched" in ready
        image = demo / "store" / "new.dcm"
        image.write_bytes(b"DICM" * 1000)
        deadline = time.monotonic() + 30
        while image.read_bytes().startswith(b"DICM") and time.monotonic() < deadline:
            time.sleep(0.2)
        stores = {s["name"]: s for s in ctl_json(capsys, "daemon", "status")["stores"]}
        assert stores["demo"]["watching"] and stores["demo"]["events"]["encrypted"] >= 1
        assert not stores["unmounted"]["watching"]
        assert "not a directory" in stores["unmounted"]["problem"]

        (tmp_path / "not-mounted").mkdir()  # its volume was unlocked: ask the daemon to look
        rescan = ctl_json(capsys, "daemon", "rescan")
        assert rescan == {"started": ["unmounted"], "not_watched": {}}
        service = ctl_json(capsys, "status")["service"]
        assert service["reachable"] and {s["name"] for s in service["stores"]} == {
            "demo", "unmounted"
        }  # fmt: skip
        assert all(s["watching"] for s in service["stores"])
        daemon.send_signal(signal.SIGTERM)
        assert daemon.wait(timeout=30) == 0
    with image.open("rb") as f:
        assert is_encrypted(f, image.stat().st_size, str(image))
    stderr = daemon.stderr.read() if daemon.stderr else ""
    assert f"store demo: encrypted {image}" in stderr
    assert "store unmounted not watched" in stderr and "not a directory" in stderr


def test_version_flag() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "imgvault.service.main", "--version"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert out.stdout.startswith("imgvaultd ")
