"""Keep a store encrypted: every file that lands in it is encrypted in place once its writer is
done with it, and a scan at start catches what arrived while nobody watched.

"Done" means: no change for `settle_seconds` (inotify close-write, create and move-in events
restart the clock) and no process has the file open. The encryption itself is the crash-safe
in-place engine of `imgvault.filecrypt.inplace`, so a crash at any point leaves the original or
its encryption, never neither. Files the engine refuses (symlinks, FIFOs, devices, several hard
links) are reported and left alone.
"""

import logging
import os
import threading
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from watchdog.events import (
    DirCreatedEvent,
    DirMovedEvent,
    FileClosedEvent,
    FileCreatedEvent,
    FileMovedEvent,
    FileSystemEvent,
    FileSystemEventHandler,
)
from watchdog.observers import Observer

from imgvault.errors import ImgvaultError
from imgvault.filecrypt.batch import Batches
from imgvault.filecrypt.errors import UnsafeFileError
from imgvault.filecrypt.inplace import TEMP_NAME, encrypt_file, recover
from imgvault.filecrypt.recipients import Recipient
from imgvault.filecrypt.stores import Store
from imgvault.filecrypt.stream import FileChangedError
from imgvault.stores.openfiles import file_id, open_file_ids

log = logging.getLogger("imgvault.stores")

# watchdog 7 warns when the watch of a new subdirectory is added twice by the same recursive
# watch (its own walk races the directory's create event); the callback is replaced by itself,
# so no event is lost, and admins should not see the traceback-like text.
warnings.filterwarnings(
    "ignore", message="Callback with id .* already exists", category=RuntimeWarning
)


@dataclass(frozen=True)
class StoreEvent:
    """What the watcher did with one file (for the journal, the demo and tests)."""

    store: str
    path: Path
    action: str  # encrypted, refused, failed, recovered
    detail: str = ""

    def to_json(self) -> dict[str, str]:
        return {"store": self.store, "path": str(self.path), "action": self.action,
                "detail": self.detail}  # fmt: skip


class _Events(FileSystemEventHandler):
    def __init__(self, watcher: "StoreWatcher") -> None:
        self.watcher = watcher

    def on_any_event(self, event: FileSystemEvent) -> None:
        if isinstance(event, FileClosedEvent | FileCreatedEvent):
            self.watcher.schedule([Path(os.fsdecode(event.src_path))])
        elif isinstance(event, FileMovedEvent):
            if not TEMP_NAME.fullmatch(Path(os.fsdecode(event.src_path)).name):
                self.watcher.schedule([Path(os.fsdecode(event.dest_path))])
            # else: our own encrypted result renamed over the original; nothing to do
        elif isinstance(event, DirCreatedEvent | DirMovedEvent):
            target = event.dest_path if isinstance(event, DirMovedEvent) else event.src_path
            self.watcher.schedule(_files_under(Path(os.fsdecode(target))))


def _files_under(root: Path) -> Iterable[Path]:
    for dirpath, _dirs, files in os.walk(root):  # never follows symlinked directories
        for name in files:
            yield Path(dirpath) / name


class StoreWatcher:
    """Watches one store's root recursively and encrypts what settles there, one file at a time
    on its own thread. `report` receives a StoreEvent for every file acted on."""

    def __init__(
        self,
        store: Store,
        recipients: Sequence[Recipient],
        report: Callable[[StoreEvent], None],
        *,
        settle_seconds: float = 2.0,
    ) -> None:
        self.store = store
        self.recipients = list(recipients)
        self._batches = Batches()  # renewed every 10 minutes or 10,000 files (filecrypt.batch)
        self.report = report
        self.settle_seconds = settle_seconds
        self._due: dict[Path, float] = {}
        self._busy = False
        self._last_schedule = 0.0
        self._lock = threading.Condition()
        self._stopping = False
        self._observer = Observer()
        self._worker = threading.Thread(target=self._work, name=f"store-{store.name}", daemon=True)

    def start(self) -> None:
        """Remove temporaries of interrupted runs, queue every file already there, then watch."""
        if not self.store.root.is_dir():
            raise ImgvaultError(
                f"store {self.store.name!r}: root {self.store.root} is not a directory",
                "mount the volume holding it, or fix the root with `imgvaultctl file store add`",
            )
        for leftover in recover(self.store.root):
            self.report(StoreEvent(self.store.name, leftover, "recovered", "temporary removed"))
        self._observer.schedule(_Events(self), str(self.store.root), recursive=True)
        self._observer.start()
        self.schedule(_files_under(self.store.root))
        self._worker.start()

    def stop(self) -> None:
        """Stop watching; the file being encrypted, if any, is finished first."""
        self._observer.stop()
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._observer.join()
        self._worker.join()
        self._batches.close()

    def schedule(self, paths: Iterable[Path]) -> None:
        now = time.monotonic()
        due = now + self.settle_seconds
        with self._lock:
            self._last_schedule = now
            for path in paths:
                if not TEMP_NAME.fullmatch(path.name):
                    self._due[path] = due
            self._lock.notify_all()

    @property
    def pending(self) -> int:
        """Files waiting to settle or being encrypted now."""
        with self._lock:
            return len(self._due) + (1 if self._busy else 0)

    def wait_idle(self, timeout: float) -> bool:
        """True once nothing is queued or being encrypted and no event came for a settle time
        (inotify events arrive a little after the writes: demo and tests)."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while (
                self._due
                or self._busy
                or time.monotonic() - self._last_schedule < self.settle_seconds
            ):
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._lock.wait(min(remaining, 0.2))
        return True

    def _next_settled(self) -> list[Path] | None:
        """Wait for files whose settle time has passed; None when stopping."""
        with self._lock:
            while not self._stopping:
                now = time.monotonic()
                ready = [p for p, due in self._due.items() if due <= now]
                if ready:
                    for path in ready:
                        del self._due[path]
                    self._busy = True
                    return ready
                wait = min(self._due.values(), default=now + 1.0) - now
                self._lock.wait(max(wait, 0.05))
            return None

    def _work(self) -> None:
        while (ready := self._next_settled()) is not None:
            try:
                in_use = open_file_ids()
                for path in sorted(ready):
                    if file_id(path) in in_use:
                        self.schedule([path])  # still open: look again after another settle
                    else:
                        self._encrypt(path)
            finally:
                with self._lock:
                    self._busy = False
                    self._lock.notify_all()

    def _encrypt(self, path: Path) -> None:
        try:
            outcome = encrypt_file(
                path, self.recipients, batches=self._batches, root=self.store.root
            )
        except FileChangedError:
            self.schedule([path])  # a writer is still at it
            return
        except ImgvaultError as error:
            if os.path.lexists(path):  # else: moved away or deleted before it settled
                action = "refused" if isinstance(error, UnsafeFileError) else "failed"
                self.report(StoreEvent(self.store.name, path, action, str(error)))
            return
        if outcome.action != "already-encrypted":  # e.g. found so at the start-up scan
            self.report(StoreEvent(self.store.name, path, outcome.action))
