"""The stores part of imgvaultd: one watcher per registered store, each reporting to the log.

A store whose root is missing (volume not unlocked yet) or whose recipients cannot be loaded is
reported and skipped; the others are still protected.
"""

import logging
from collections.abc import Callable

from imgvault.errors import ImgvaultError
from imgvault.filecrypt.keystore import KeyStore
from imgvault.filecrypt.stores import StoreRegistry
from imgvault.stores.watcher import StoreEvent, StoreWatcher

log = logging.getLogger("imgvault.stores")


def log_event(event: StoreEvent) -> None:
    level = logging.INFO if event.action in ("encrypted", "recovered") else logging.WARNING
    detail = f": {event.detail}" if event.detail else ""
    log.log(level, "store %s: %s %s%s", event.store, event.action, event.path, detail)


def start_watchers(
    report: Callable[[StoreEvent], None] = log_event, *, settle_seconds: float = 2.0
) -> tuple[list[StoreWatcher], list[str]]:
    """Start a watcher for every registered store; returns them and one problem per store that
    could not be watched."""
    keystore = KeyStore()
    watchers: list[StoreWatcher] = []
    problems: list[str] = []
    for store in StoreRegistry().stores().values():
        try:
            recipients = [keystore.recipient(name) for name in store.recipients]
            watcher = StoreWatcher(store, recipients, report, settle_seconds=settle_seconds)
            watcher.start()
        except ImgvaultError as error:
            problems.append(f"store {store.name}: {error}")
            log.error("store %s not watched: %s", store.name, error)
            continue
        log.info(
            "store %s: watching %s for %s", store.name, store.root, ", ".join(store.recipients)
        )
        watchers.append(watcher)
    return watchers, problems
