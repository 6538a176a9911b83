"""Entry point of `imgvaultd`.

The service takes a device inventory at start, then keeps every registered image store
encrypted (`imgvault.stores`): what is already there at start and everything that lands later.
It reports readiness and a one-line status to systemd (Type=notify) and stops cleanly on SIGTERM,
finishing the file it is encrypting.
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
from imgvault.stores.service import start_watchers

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
    watchers, problems = start_watchers()
    if not watchers and not problems:
        log.info("no image stores registered: add one with 'imgvaultctl file store add'")
    status = f"watching {len(watchers)} store(s)"
    if problems:
        status += f", {len(problems)} not watched (see the journal)"
    sd_daemon.notify(f"READY=1\nSTATUS=imgvaultd {__version__}: {status}")
    log.info("ready: %s", status)
    stop.wait()
    sd_daemon.notify("STOPPING=1")
    for watcher in watchers:
        watcher.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
