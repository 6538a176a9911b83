"""Entry point of `imgvaultd`.

Today the service takes a device inventory at start, reports readiness to systemd
(Type=notify) and waits for SIGTERM. Store watching and the control socket build on this loop.
"""

import argparse
import logging
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

import systemd.daemon as sd_daemon

from imgvault import __version__
from imgvault.devices.inventory import list_block_devices
from imgvault.errors import ImgvaultError
from imgvault.secret import harden_process

log = logging.getLogger("imgvaultd")


def _summarise_inventory() -> None:
    devices = list_block_devices()
    encrypted = [d for d in devices if d.encryption is not None]
    log.info("%d block devices, %d LUKS", len(devices), len(encrypted))
    for device in encrypted:
        log.info("%s: %s", device.path, device.encryption_summary())


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
    sd_daemon.notify(f"READY=1\nSTATUS=imgvaultd {__version__} running")
    log.info("ready")
    stop.wait()
    sd_daemon.notify("STOPPING=1")
    return 0


if __name__ == "__main__":
    sys.exit(main())
