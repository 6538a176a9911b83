"""LUKS header backups: the one copy that saves a volume whose header gets damaged.

A LUKS header holds the only wrapped copies of the volume key; if its sectors are overwritten
the data is gone even with the right passphrase. A backup is the whole header (JSON metadata
and keyslot areas, what `cryptsetup luksHeaderBackup` writes), 0600 in the policy's backup
directory, named so that a directory listing tells which volume and when.
"""

import os
import tempfile
from datetime import UTC, datetime
from pathlib import Path

from imgvault.system.atomic import fsync_directory
from imgvault.volumes import cryptsetup


def backup_file_name(name: str, uuid: str, when: datetime) -> str:
    """`NAME.UUID.YYYYmmddTHHMMSSZ.luksheader`: sorts by volume, then by time."""
    return f"{name}.{uuid}.{when.strftime('%Y%m%dT%H%M%SZ')}.luksheader"


def backup_header(device: str | Path, backup_dir: Path, name: str) -> Path:
    """Write a header backup of `device` to `backup_dir` (created 0700) and return its path.

    cryptsetup writes into a fresh temporary name; the file is made 0600, synced and then
    renamed, so the directory never holds a partial backup under a real name.
    """
    uuid = cryptsetup.luks_uuid(device)
    backup_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    target = backup_dir / backup_file_name(name, uuid, datetime.now(UTC))
    temp_dir = Path(tempfile.mkdtemp(dir=backup_dir, prefix=".backup-"))
    temp = temp_dir / "header"
    try:
        cryptsetup.header_backup(device, temp)
        temp.chmod(0o600)
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        temp.replace(target)
        fsync_directory(backup_dir)
    finally:
        temp.unlink(missing_ok=True)
        temp_dir.rmdir()
    return target


def latest_backup(backup_dir: Path, uuid: str) -> Path | None:
    """The newest backup of the volume `uuid` in `backup_dir` (names sort by time)."""
    candidates = sorted(backup_dir.glob(f"*.{uuid}.*.luksheader")) if backup_dir.is_dir() else []
    return max(candidates, key=lambda p: p.name.rsplit(".", 2)[-2]) if candidates else None
