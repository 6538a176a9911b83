"""From what an admin types (a registered name, a device path or a LUKS UUID) to a device.

Device paths change across boots and names exist only in imgvault's registry, so every volume
command resolves its argument here, once, with one error wording for "not found".
"""

from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from imgvault.errors import ImgvaultError
from imgvault.volumes import cryptsetup
from imgvault.volumes.errors import DeviceMissingError
from imgvault.volumes.registry import VolumeRecord, find_volume, load_registry, save_registry

DEV_BY_UUID = Path("/dev/disk/by-uuid")


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
    if record is not None:
        return VolumeTarget(device=str(current_device(record)), record=record)
    if "/" not in name_or_device:
        raise UnknownVolumeError(
            f"no volume named {name_or_device!r} in the registry",
            "give the device path instead (e.g. /dev/sdb), or see 'imgvaultctl volume list'",
        )
    if not Path(name_or_device).exists():
        raise DeviceMissingError(
            f"{name_or_device} does not exist",
            "check that the disk is attached; 'imgvaultctl status' lists block devices",
        )
    return VolumeTarget(device=name_or_device, record=None)


def current_device(record: VolumeRecord) -> Path:
    """Where a registered volume is now. Device paths change across boots and another disk
    may take the old path, so the LUKS UUID decides: udev's by-uuid link, else the recorded
    path if the header there still has that UUID."""
    by_uuid = DEV_BY_UUID / record.uuid
    if by_uuid.exists():
        return by_uuid.resolve()
    device = Path(record.device)
    if device.exists() and cryptsetup.probe_identity(device).get("UUID") == record.uuid:
        return device
    raise DeviceMissingError(
        f"volume {record.name}: no device with LUKS UUID {record.uuid} (it was on {record.device})",
        "check that the disk is attached; 'imgvaultctl status' lists block devices",
    )


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
