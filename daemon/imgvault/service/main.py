"""Entry point of `imgvaultd`.

The service takes a device inventory at start, then keeps every registered image store
encrypted (`imgvault.stores`): what is already there at start and everything that lands later.
It answers `imgvaultctl daemon ...` on the control socket (`imgvault.control`), reports
readiness and a one-line status to systemd (Type=notify) and stops cleanly on SIGTERM,
finishing the file it is encrypting.
"""

import argparse
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any

import systemd.daemon as sd_daemon

from imgvault import __version__, paths
from imgvault.control.server import ControlServer, Method
from imgvault.devices.inventory import list_block_devices
from imgvault.errors import ImgvaultError
from imgvault.secret import harden_process
from imgvault.stores.service import StoreService

log = logging.getLogger("imgvaultd")


def _summarise_inventory() -> None:
    devices = list_block_devices()
    encrypted = [d for d in devices if d.encryption is not None]
    log.info("%d block devices, %d LUKS", len(devices), len(encrypted))
    for device in encrypted:
        log.info("%s: %s", device.path, device.encryption_summary())


def _systemd_status(stores: StoreService) -> str:
    status = f"imgvaultd {__version__}: watching {len(stores.watchers)} store(s)"
    if stores.problems:
        status += f", {len(stores.problems)} not watched (see the journal)"
    return status


def _control_methods(stores: StoreService, started: float) -> dict[str, Method]:
    def status(_params: dict[str, Any]) -> dict[str, Any]:
        return {
            "version": __version__,
            "pid": os.getpid(),
            "uptime_seconds": round(time.monotonic() - started, 1),
            "stores": stores.status(),
        }

    def rescan(_params: dict[str, Any]) -> dict[str, Any]:
        """Watch stores registered or made available (volume unlocked) since the start."""
        newly = stores.start_registered()
        sd_daemon.notify(f"STATUS={_systemd_status(stores)}")
        return {"started": newly, "not_watched": dict(stores.problems)}

    return {"status": Method(status, admin=False), "rescan": Method(rescan, admin=True)}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="imgvaultd",
        description="The imgvault service. Normally started by systemd (imgvaultd.service).",
    )
    parser.add_argument("--version", action="version", version=f"imgvaultd {__version__}")
    parser.parse_args(argv)
    harden_process()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(levelname)s: %(message)s")

    stop = threading.Event()

    def request_stop(signum: int, _frame: FrameType | None) -> None:
        log.info("received %s, stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)
    try:
        _summarise_inventory()
    except ImgvaultError as error:
        log.error("%s", error)
        return error.exit_code
    started = time.monotonic()
    stores = StoreService()
    stores.start_registered()
    if not stores.watchers and not stores.problems:
        log.info("no image stores registered: add one with 'imgvaultctl file store add'")
    control = ControlServer(paths.control_socket(), _control_methods(stores, started))
    try:
        control.start()
    except ImgvaultError as error:
        log.error("%s", error)
        stores.stop()
        return error.exit_code
    status = _systemd_status(stores)
    sd_daemon.notify(f"READY=1\nSTATUS={status}")
    log.info("ready: %s; control socket %s", status, control.path)
    stop.wait()
    sd_daemon.notify("STOPPING=1")
    control.stop()
    stores.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
