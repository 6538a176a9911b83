"""imgvault's record of the volumes it manages: what the LUKS header cannot tell.

A LUKS header holds no names, dates or history, so the registry keeps, per volume: the name the
admin uses, the header UUID (the identity; device paths change across boots), the profile it was
made with, where it mounts, which keyslot holds the recovery key, and when keys last changed and
the header was last backed up (compliance compares the two). It is one JSON file in the state
directory, replaced atomically so a crash leaves the old or the new registry, never half of one.
"""

import json
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from imgvault.errors import ImgvaultError
from imgvault.paths import state_dir
from imgvault.system.atomic import write_atomic


class RegistryError(ImgvaultError):
    pass


@dataclass
class VolumeRecord:
    name: str
    uuid: str
    device: str
    profile: str
    created: str  # ISO 8601 UTC
    mountpoint: str | None = None
    filesystem: str | None = None
    recovery_keyslot: int | None = None
    last_key_change: str | None = None
    header_backup: str | None = None
    header_backup_time: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def registry_path() -> Path:
    return state_dir() / "volumes.json"


def load_registry() -> dict[str, VolumeRecord]:
    path = registry_path()
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise RegistryError(
            f"cannot read the volume registry {path}: {error}",
            "restore it from backup, or move it aside to start an empty registry",
        ) from None
    known = {f.name for f in fields(VolumeRecord)}
    return {
        name: VolumeRecord(**{k: v for k, v in record.items() if k in known})
        for name, record in document.get("volumes", {}).items()
    }


def save_registry(records: dict[str, VolumeRecord]) -> None:
    path = registry_path()
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    document = {"volumes": {name: asdict(r) for name, r in sorted(records.items())}}
    write_atomic(path, (json.dumps(document, indent=2) + "\n").encode())


def find_volume(records: dict[str, VolumeRecord], name_or_device: str) -> VolumeRecord | None:
    """By registered name, by device path or by LUKS UUID."""
    if name_or_device in records:
        return records[name_or_device]
    for record in records.values():
        if name_or_device in (record.device, record.uuid):
            return record
    return None
