"""LUKS header backups: the header and keyslots are the only way into the data, so a damaged
header without a backup loses the volume. Backups are 0600 files in a 0700 directory."""

import re
from datetime import UTC, datetime
from pathlib import Path

from imgvault.volumes import cryptsetup
from imgvault.volumes.registry import VolumeRecord


def backup_header(record_or_device: VolumeRecord | str | Path, backup_dir: Path) -> Path:
    """Back up the header of a registered volume (or of a device path) to a new file in
    `backup_dir`, named after the volume (or LUKS UUID) and the UTC time; returns its path.

    The file appears under its final name only when complete and 0600 (cryptsetup writes it
    0400 under a temporary name), so a crash never leaves a half backup that looks whole.
    """
    if isinstance(record_or_device, VolumeRecord):
        device, stem = record_or_device.device, record_or_device.name
    else:
        device = str(record_or_device)
        stem = cryptsetup.read_header(device).uuid
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    backup_dir.chmod(0o700)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S%fZ")
    final = backup_dir / f"{stem}-{stamp}.luksheader"
    partial = backup_dir / f".{final.name}.partial"
    partial.unlink(missing_ok=True)
    try:
        cryptsetup.header_backup(device, partial)
        partial.chmod(0o600)
        partial.rename(final)
    finally:
        partial.unlink(missing_ok=True)
    return final


def latest_backup(backup_dir: Path, stems: tuple[str, ...]) -> Path | None:
    """The newest backup in `backup_dir` named after one of `stems` (volume name, LUKS UUID)."""
    if not backup_dir.is_dir():
        return None
    found = [
        (match.group(1), path)
        for path in backup_dir.iterdir()
        for stem in stems
        if (match := re.fullmatch(re.escape(stem) + r"-(\d{8}T\d{12}Z)\.luksheader", path.name))
    ]
    return max(found)[1] if found else None
