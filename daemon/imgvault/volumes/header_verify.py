"""Check a header backup against its device, and put it back when the device's header is lost.

A backup is only useful if it belongs to the device (same LUKS UUID) and still wraps the volume
key the data is encrypted with. Keyslots are compared by their PBKDF salts (a changed passphrase
gets a new salt), digests by value: each difference is reported in words an admin can act on.
Restoring refuses a backup of another volume, or of a volume key the data no longer uses, unless
forced: either would make the data unreadable.
"""

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from imgvault.errors import ImgvaultError
from imgvault.volumes import cryptsetup
from imgvault.volumes.errors import CryptsetupError


class HeaderBackupError(ImgvaultError):
    pass


@dataclass(frozen=True)
class Difference:
    part: str  # "uuid", "keyslot 1", "volume key", "segments", ...
    backup: str
    device: str


@dataclass(frozen=True)
class HeaderComparison:
    backup: str
    device: str
    backup_uuid: str
    device_uuid: str
    differences: tuple[Difference, ...]

    @property
    def matches(self) -> bool:
        return not self.differences

    @property
    def same_volume(self) -> bool:
        return self.backup_uuid == self.device_uuid

    @property
    def same_volume_key(self) -> bool:
        return all(d.part != "volume key" for d in self.differences)

    def to_json(self) -> dict[str, Any]:
        return {
            **asdict(self),
            "matches": self.matches,
            "same_volume": self.same_volume,
            "same_volume_key": self.same_volume_key,
        }


def _keyslot_summary(slot: dict[str, Any]) -> str:
    kdf = slot.get("kdf", {})
    cost = kdf.get("iterations") or f"time {kdf.get('time')}, memory {kdf.get('memory')} KiB"
    return f"{slot.get('type')} {int(slot.get('key_size', 0)) * 8}-bit, {kdf.get('type')} {cost}"


def _area(path: str | Path, slot: dict[str, Any]) -> bytes:
    """A keyslot's binary area: the wrapped volume key, which the JSON does not checksum."""
    with Path(path).open("rb") as f:
        f.seek(int(slot["area"]["offset"]))
        return f.read(int(slot["area"]["size"]))


def _compare_keyslots(
    backup_path: Path, backup: dict[str, Any], device_path: str | Path, device: dict[str, Any]
) -> list[Difference]:
    differences = []
    for slot_id in sorted(set(backup) | set(device), key=int):
        old, new = backup.get(slot_id), device.get(slot_id)
        if old is None or new is None:
            differences.append(
                Difference(
                    f"keyslot {slot_id}",
                    _keyslot_summary(old) if old else "absent",
                    _keyslot_summary(new) if new else "absent",
                )
            )
        elif old != new:  # a new salt or PBKDF: the passphrase was changed or re-added
            differences.append(
                Difference(
                    f"keyslot {slot_id}",
                    f"{_keyslot_summary(old)} (salt {old.get('kdf', {}).get('salt', '-')[:8]}…)",
                    f"{_keyslot_summary(new)} (salt {new.get('kdf', {}).get('salt', '-')[:8]}…)",
                )
            )
        elif _area(backup_path, old) != _area(device_path, new):
            differences.append(
                Difference(f"keyslot {slot_id}", "key material differs", "key material differs")
            )
    return differences


def _data_key_digests(metadata: dict[str, Any]) -> set[str]:
    """Digests of the volume key(s) that data segments are encrypted with."""
    return {d["digest"] for d in metadata.get("digests", {}).values() if d.get("segments")}


def compare_header(backup: Path, device: str | Path) -> HeaderComparison:
    """Compare the header backup file `backup` with the header on `device`."""
    if not backup.is_file():
        raise HeaderBackupError(
            f"header backup {backup} does not exist",
            "list the backups in the policy's header_backup_dir, or make one with "
            "'imgvaultctl volume header backup'",
        )
    if cryptsetup.probe_identity(backup).get("VERSION") == "1":
        return _compare_luks1(backup, device)
    try:
        backup_uuid = cryptsetup.luks_uuid(backup)
        backup_meta = cryptsetup.dump_metadata(backup)
    except CryptsetupError as error:
        raise HeaderBackupError(
            f"{backup} is not a readable LUKS2 header backup",
            "give a file written by 'imgvaultctl volume header backup' (or cryptsetup "
            "luksHeaderBackup)",
        ) from error
    device_uuid = cryptsetup.luks_uuid(device)
    device_meta = cryptsetup.dump_metadata(device)
    differences: list[Difference] = []
    if backup_uuid != device_uuid:
        differences.append(Difference("uuid", backup_uuid, device_uuid))
    old_keys, new_keys = _data_key_digests(backup_meta), _data_key_digests(device_meta)
    if old_keys != new_keys:
        differences.append(
            Difference("volume key", ", ".join(sorted(old_keys)), ", ".join(sorted(new_keys)))
        )
    differences += _compare_keyslots(
        backup, backup_meta["keyslots"], device, device_meta["keyslots"]
    )
    for part in ("segments", "tokens", "config"):
        if backup_meta.get(part) != device_meta.get(part):
            differences.append(
                Difference(part, repr(backup_meta.get(part)), repr(device_meta.get(part)))
            )
    return HeaderComparison(str(backup), str(device), backup_uuid, device_uuid, tuple(differences))


# LUKS1 on-disk header (LUKS1 On-Disk Format Specification 1.2.3): the volume key digest.
_LUKS1_MK_DIGEST = slice(112, 132)


def _compare_luks1(backup: Path, device: str | Path) -> HeaderComparison:
    """LUKS1 has no JSON metadata: compare the volume-key digest, then the bytes."""
    backup_uuid, device_uuid = cryptsetup.luks_uuid(backup), cryptsetup.luks_uuid(device)
    saved = backup.read_bytes()
    with Path(device).open("rb") as f:
        current = f.read(len(saved))
    differences = []
    if backup_uuid != device_uuid:
        differences.append(Difference("uuid", backup_uuid, device_uuid))
    if saved[_LUKS1_MK_DIGEST] != current[_LUKS1_MK_DIGEST]:
        differences.append(
            Difference("volume key", saved[_LUKS1_MK_DIGEST].hex(), current[_LUKS1_MK_DIGEST].hex())
        )
    if not differences and saved != current:
        differences.append(Difference("keyslots", "LUKS1 header bytes", "differ"))
    return HeaderComparison(str(backup), str(device), backup_uuid, device_uuid, tuple(differences))


def plan_restore(
    backup: Path, device: str | Path, *, force: bool = False
) -> HeaderComparison | None:
    """Check that `backup` may be written over the header of `device`; changes nothing.

    Refused without `force`: a backup of another volume (UUID), one whose volume key differs
    from the one the data uses (the data was re-encrypted since), and a device whose header
    cannot be read (so nothing can be checked; then None is returned when forced).
    """
    try:
        comparison = compare_header(backup, device)
    except CryptsetupError as error:
        if not force:
            raise HeaderBackupError(
                f"cannot read the LUKS header on {device}, so {backup} cannot be checked "
                f"against it: {error.message}",
                "if the header is damaged and this backup is certainly of this disk, repeat "
                "with --force",
            ) from error
        return None
    if not force and not comparison.same_volume:
        raise HeaderBackupError(
            f"{backup} is a header of another volume (UUID {comparison.backup_uuid}, "
            f"the device has {comparison.device_uuid})",
            "pick the backup named with this device's UUID; --force restores it anyway and "
            "makes the data unreadable unless you are sure",
        )
    if not force and not comparison.same_volume_key:
        raise HeaderBackupError(
            f"{backup} wraps a different volume key than the data on {device} uses (the "
            "volume was re-encrypted after this backup)",
            "restore a backup made after the re-encryption; --force would make the data unreadable",
        )
    return comparison


def restore_header(backup: Path, device: str | Path, *, force: bool = False) -> bool:
    """Restore `backup` over the header of `device` if `plan_restore` allows it; a backup
    identical to the header is not rewritten. Returns whether the header was written."""
    comparison = plan_restore(backup, device, force=force)
    if comparison is not None and comparison.matches:
        return False
    cryptsetup.header_restore(device, backup)
    return True
