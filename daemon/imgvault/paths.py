"""Where imgvault keeps its state. One place, so tests and the demo can point it elsewhere."""

import os
from pathlib import Path


def state_dir() -> Path:
    """Registry, key store, header backups: $IMGVAULT_STATE_DIR or /var/lib/imgvault (made 0700
    by systemd-tmpfiles)."""
    return Path(os.environ.get("IMGVAULT_STATE_DIR") or "/var/lib/imgvault")


def config_dir() -> Path:
    """The admin's policy lives here: $IMGVAULT_CONFIG_DIR or /etc/imgvault."""
    return Path(os.environ.get("IMGVAULT_CONFIG_DIR") or "/etc/imgvault")


def runtime_dir() -> Path:
    """The control socket's directory: $IMGVAULT_RUNTIME_DIR or /run/imgvault (0750
    root:imgvault, made by systemd-tmpfiles)."""
    return Path(os.environ.get("IMGVAULT_RUNTIME_DIR") or "/run/imgvault")


def control_socket() -> Path:
    return runtime_dir() / "control.sock"
