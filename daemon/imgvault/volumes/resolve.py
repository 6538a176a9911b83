"""From what an admin types (a registered name, a device path or a LUKS UUID) to a device.

Device paths change across boots and names exist only in imgvault's registry, so every volume
command resolves its argument here, once, with one error wording for "not found".
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from imgvault.errors import ImgvaultError
from imgvault.volumes.errors import DeviceMissingError
from imgvault.volumes.registry import VolumeRecord, find_volume, load_registry, save_registry


class UnknownVolumeError(ImgvaultError):
    exit_code = 4


@dataclass(frozen=True)
class VolumeTarget:
    device: str
    record: VolumeRecord | None

    @property
    def label(self) -> str:
        """How messages name it: the registered name, else the device path."""
        return self.record.name if self.record else self.device


def resolve_volume(name_or_device: str) -> VolumeTarget:
    record = find_volume(load_registry(), name_or_device)
    device = record.device if record else name_or_device
    if record is None and "/" not in name_or_device:
        raise UnknownVolumeError(
            f"no volume named {name_or_device!r} in the registry",
            "give the device path instead (e.g. /dev/sdb), or see 'imgvaultctl volume list'",
        )
    if not Path(device).exists():
        raise DeviceMissingError(
            f"{device} does not exist" + (f" (registered for {record.name})" if record else ""),
            "check that the disk is attached; 'imgvaultctl status' lists block devices",
        )
    return VolumeTarget(device=device, record=record)


def utc_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def update_record(name: str, **changes: object) -> VolumeRecord:
    """Change fields of one registry record and save the registry atomically."""
    records = load_registry()
    record = records[name]
    for key, value in changes.items():
        setattr(record, key, value)
    save_registry(records)
    return record
