"""A one-line progress bar on stderr, shown only when stderr is a terminal."""

import sys
import time

from imgvault.cli.output import human_size


class Progress:
    def __init__(self, total_files: int, total_bytes: int, *, enabled: bool) -> None:
        self.total_files = total_files
        self.total_bytes = total_bytes
        self.enabled = enabled and total_files > 1 and sys.stderr.isatty()
        self.files = 0
        self.bytes = 0
        self.start = time.monotonic()

    def step(self, size: int) -> None:
        self.files += 1
        self.bytes += size
        if not self.enabled:
            return
        width = 30
        done = int(width * self.files / self.total_files)
        rate = self.bytes / max(time.monotonic() - self.start, 1e-6)
        sys.stderr.write(
            f"\r[{'#' * done}{' ' * (width - done)}] {self.files}/{self.total_files} files, "
            f"{human_size(self.bytes)}/{human_size(self.total_bytes)}, {human_size(int(rate))}/s"
        )
        sys.stderr.flush()

    def close(self) -> None:
        if self.enabled:
            sys.stderr.write("\n")
