"""The stores part of imgvaultd: one watcher per registered store, each reporting to the log
and counted for `imgvaultctl daemon status`.

A store whose root is missing (volume not unlocked yet) or whose recipients cannot be loaded is
reported and skipped; the others are still protected. `start_registered` can be called again
(`imgvaultctl daemon rescan`) to pick up stores that became available since.
"""

import logging
import threading
from collections import Counter
from typing import Any

from imgvault.errors import ImgvaultError
from imgvault.filecrypt.keystore import KeyStore
from imgvault.filecrypt.stores import StoreRegistry
from imgvault.stores.watcher import StoreEvent, StoreWatcher

log = logging.getLogger("imgvault.stores")


def log_event(event: StoreEvent) -> None:
    level = logging.INFO if event.action in ("encrypted", "recovered") else logging.WARNING
    detail = f": {event.detail}" if event.detail else ""
    log.log(level, "store %s: %s %s%s", event.store, event.action, event.path, detail)


class StoreService:
    """The watchers of the registered stores, what each did, and why others are not watched."""

    def __init__(self, *, settle_seconds: float = 2.0) -> None:
        self.settle_seconds = settle_seconds
        self.watchers: dict[str, StoreWatcher] = {}
        self.problems: dict[str, str] = {}
        self._counts: dict[str, Counter[str]] = {}
        self._lock = threading.Lock()  # the dictionaries: `status` reads them from any thread
        self._starting = threading.Lock()  # one `start_registered` at a time

    def _report(self, event: StoreEvent) -> None:
        log_event(event)
        with self._lock:
            self._counts.setdefault(event.store, Counter())[event.action] += 1

    def start_registered(self) -> list[str]:
        """Start a watcher for every registered store not watched yet; the names started."""
        with self._starting:
            keystore = KeyStore()
            started = []
            for store in StoreRegistry().stores().values():
                if store.name in self.watchers:
                    continue
                try:
                    recipients = [keystore.recipient(name) for name in store.recipients]
                    watcher = StoreWatcher(
                        store, recipients, self._report, settle_seconds=self.settle_seconds
                    )
                    watcher.start()
                except ImgvaultError as error:
                    with self._lock:
                        self.problems[store.name] = str(error)
                    log.error("store %s not watched: %s", store.name, error)
                    continue
                with self._lock:
                    self.problems.pop(store.name, None)
                    self.watchers[store.name] = watcher
                started.append(store.name)
                log.info(
                    "store %s: watching %s for %s",
                    store.name,
                    store.root,
                    ", ".join(store.recipients),
                )
            return started

    def status(self) -> list[dict[str, Any]]:
        with self._lock:
            counts = {name: dict(c) for name, c in self._counts.items()}
            watchers, problems = dict(self.watchers), dict(self.problems)
        rows: list[dict[str, Any]] = [
            {
                "name": name,
                "root": str(watcher.store.root),
                "watching": True,
                "pending": watcher.pending,
                "events": counts.get(name, {}),
                "problem": None,
            }
            for name, watcher in watchers.items()
        ]
        rows += [
            {"name": name, "root": None, "watching": False, "pending": 0, "events": {},
             "problem": problem}
            for name, problem in problems.items()
        ]  # fmt: skip
        return sorted(rows, key=lambda row: str(row["name"]))

    def stop(self) -> None:
        for watcher in self.watchers.values():
            watcher.stop()
