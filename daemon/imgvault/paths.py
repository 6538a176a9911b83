"""Where imgvault keeps its state on the host (keys, store registry, header backups)."""

import os
from pathlib import Path


def state_dir() -> Path:
    """`$IMGVAULT_STATE_DIR`, else `/var/lib/imgvault` (created 0700 by systemd-tmpfiles)."""
    return Path(os.environ.get("IMGVAULT_STATE_DIR") or "/var/lib/imgvault")
