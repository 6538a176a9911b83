"""Re-encryption of a LUKS2 volume in place: a stronger cipher profile (aes-128-xts to
aes-256-xts) or a new volume key with the same cipher (volume-key rotation).

`cryptsetup reencrypt` does the work and keeps its progress in the LUKS2 header (a "reencrypt"
keyslot and backup segments), which is what makes it resumable after SIGKILL, a crash or a
reboot: the header, not a job file, says whether re-encryption is unfinished. With the volume's
dm-crypt mapping open it runs online (the file system stays mounted); closed, offline.

cryptsetup re-wraps every keyslot with the new volume key and needs the passphrase of each: a
keyslot left out would be dropped, so a volume with a recovery key needs that key too. The new
keyslots get new numbers (allocated in the order of the old ones); the registry's recovery
keyslot follows, the key-change time is recorded and a fresh header backup is written, since
every older backup wraps a volume key the data no longer uses.
"""

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgvault.errors import ImgvaultError
from imgvault.policy import Profile, load_policy
from imgvault.secret import Secret
from imgvault.volumes import cryptsetup
from imgvault.volumes.errors import CryptsetupError, DeviceBusyError
from imgvault.volumes.header_backup import backup_header
from imgvault.volumes.luks import LuksHeader, Pbkdf
from imgvault.volumes.mappings import luks_mapping
from imgvault.volumes.registry import VolumeRecord, load_registry
from imgvault.volumes.resolve import update_record, utc_now


class ReencryptError(ImgvaultError):
    pass


@dataclass(frozen=True)
class Progress:
    """One `cryptsetup reencrypt --progress-json` report."""

    done_bytes: int
    total_bytes: int
    speed_bytes_per_s: int
    eta_ms: int
    elapsed_ms: int

    @classmethod
    def from_cryptsetup(cls, report: dict[str, Any]) -> "Progress":
        return cls(
            done_bytes=int(report.get("device_bytes", 0)),
            total_bytes=int(report.get("device_size", 0)),
            speed_bytes_per_s=int(report.get("speed", 0)),
            eta_ms=int(report.get("eta_ms", 0)),
            elapsed_ms=int(report.get("time_ms", 0)),
        )

    @property
    def percent(self) -> float:
        return 100.0 * self.done_bytes / self.total_bytes if self.total_bytes else 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "done_bytes": self.done_bytes,
            "total_bytes": self.total_bytes,
            "percent": round(self.percent, 1),
            "speed_bytes_per_s": self.speed_bytes_per_s,
            "eta_ms": self.eta_ms,
            "elapsed_ms": self.elapsed_ms,
        }


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class Target:
    """What the data is re-encrypted to. `profile` None: keep the registered profile."""

    cipher: str
    key_bits: int
    pbkdf: Pbkdf
    profile: str | None
    # Data re-encrypted per step (cryptsetup's default: as much as fits the header's backup
    # area). Smaller steps mean shorter pauses of I/O online, and more of them.
    hotzone_mib: int | None = None

    @classmethod
    def from_profile(cls, profile: Profile, pbkdf: Pbkdf | None = None) -> "Target":
        return cls(profile.cipher, profile.key_bits, pbkdf or profile.pbkdf_setting(), profile.name)

    @classmethod
    def rotation(cls, header: LuksHeader, pbkdf: Pbkdf) -> "Target":
        """Same cipher and key size, new volume key."""
        return cls(header.cipher, header.key_bits, pbkdf, None)

    def cryptsetup_options(self) -> list[str]:
        # The key size is always explicit: cryptsetup's default is 512 bits.
        options = ["--cipher", self.cipher, "--key-size", str(self.key_bits)]
        if self.hotzone_mib is not None:
            options += ["--hotzone-size", f"{self.hotzone_mib}M"]
        return [*options, *self.pbkdf.cryptsetup_args()]


def online_mapping_name(header: LuksHeader) -> str | None:
    """The name of the volume's open mapping (re-encryption then runs online), else None."""
    mapping = luks_mapping(header.uuid)
    return mapping.name if mapping else None


def active_keyslots(header: LuksHeader) -> list[int]:
    return [slot.id for slot in header.keyslots if slot.type in ("luks2", "luks1")]


def match_keys(device: str | Path, header: LuksHeader, keys: list[Secret]) -> dict[int, Secret]:
    """Which keyslot each key opens; every active keyslot must be covered."""
    by_slot: dict[int, Secret] = {}
    for key in keys:
        by_slot.setdefault(cryptsetup.test_key(device, key), key)
    missing = [slot for slot in active_keyslots(header) if slot not in by_slot]
    if missing:
        slots = ", ".join(str(slot) for slot in missing)
        raise ReencryptError(
            f"no passphrase given for keyslot(s) {slots} of {device}: re-encryption re-wraps "
            "every keyslot and would drop those",
            "give one --key-file per keyslot (the recovery key too), or remove the unused "
            "keyslots first with 'imgvaultctl volume key remove'",
        )
    return by_slot


def reencrypt_volume(
    device: str | Path,
    keys: list[Secret],
    target: Target,
    record: VolumeRecord | None = None,
    on_progress: ProgressCallback | None = None,
) -> LuksHeader:
    """Re-encrypt `device` to `target` with the passphrases `keys` (one per keyslot)."""
    header = cryptsetup.read_header(device)
    if header.version != 2:
        raise ReencryptError(
            f"{device} is LUKS1: imgvault re-encrypts only LUKS2 (LUKS1 re-encryption is not "
            "crash-safe)",
            "convert it offline first: 'cryptsetup convert --type luks2 DEVICE' (after a "
            "header backup)",
        )
    if header.reencryption is not None:
        raise ReencryptError(
            f"{device} has an unfinished re-encryption",
            "finish it first: 'imgvaultctl volume reencrypt --resume " + str(device) + "'",
        )
    by_slot = match_keys(device, header, keys)
    if record is not None:
        update_record(
            record.name,
            extra={
                **record.extra,
                "reencrypt_old_keyslots": active_keyslots(header),
                "reencrypt_profile": target.profile,
            },
        )
    cryptsetup.reencrypt(
        device,
        [by_slot[slot] for slot in active_keyslots(header)],
        target.cryptsetup_options(),
        _reporter(on_progress),
        active_name=online_mapping_name(header),
    )
    return _finished(device, record, target.profile)


def resume_reencryption(
    device: str | Path,
    key: Secret,
    record: VolumeRecord | None = None,
    on_progress: ProgressCallback | None = None,
) -> LuksHeader:
    """Finish an interrupted re-encryption (idempotent: a finished one is left alone).

    Two leftovers of a run that was cut off are handled here. Offline, a run stopped inside its
    hot zone needs `cryptsetup repair` first. Online, a run killed outright (SIGKILL) leaves its
    half-switched device-mapper stack (NAME-overlay, NAME-hotzone-*) under the open mapping,
    which cryptsetup 2.6 cannot resume on; closing and reopening the mapping recovers the hot
    zone from the header (as a reboot would). That needs the file system unmounted: if it is
    still mounted, nothing is done and the error says so.
    """
    header = cryptsetup.read_header(device)
    if header.reencryption is None:
        return header
    cryptsetup.test_key(device, key)  # a wrong key fails here, before anything is touched
    active_name = online_mapping_name(header)

    def resume() -> None:
        cryptsetup.reencrypt(
            device, [key], ["--resume-only"], _reporter(on_progress), active_name=active_name
        )

    try:
        resume()
    except CryptsetupError as error:
        if active_name is not None and "Mismatching parameters" in error.message:
            _reopen_after_kill(device, active_name, key)
        elif "repair" in error.message:
            cryptsetup.repair(device, key)
        else:
            raise
        if cryptsetup.read_header(device).reencryption is not None:
            resume()
    return _finished(device, record, None)


def _reopen_after_kill(device: str | Path, name: str, key: Secret) -> None:
    try:
        cryptsetup.close_volume(name)
    except DeviceBusyError:
        raise ReencryptError(
            f"the online re-encryption of {device} was killed and left its device-mapper stack "
            f"half-switched under /dev/mapper/{name}; cryptsetup can resume only after the "
            "mapping is reopened, and it is in use",
            f"unmount the file system on /dev/mapper/{name} (stop what uses it), then run the "
            "same --resume again: it reopens the mapping and resumes online; remount after",
        ) from None
    cryptsetup.open_volume(device, name, key)  # activation recovers the hot zone


def _reporter(on_progress: ProgressCallback | None) -> Callable[[dict[str, Any]], None]:
    def report(raw: dict[str, Any]) -> None:
        if on_progress is not None:
            on_progress(Progress.from_cryptsetup(raw))

    return report


def _finished(device: str | Path, record: VolumeRecord | None, profile: str | None) -> LuksHeader:
    """Record the new volume key in the registry and back up the new header."""
    header = cryptsetup.read_header(device)
    if record is None:
        return header
    record = load_registry()[record.name]  # with what reencrypt_volume noted at the start
    extra = dict(record.extra)
    old_slots: list[int] = extra.pop("reencrypt_old_keyslots", [])
    saved_profile = extra.pop("reencrypt_profile", None)
    profile = profile or saved_profile
    recovery = record.recovery_keyslot
    new_slots = active_keyslots(header)
    if recovery is not None and recovery in old_slots and len(old_slots) == len(new_slots):
        recovery = new_slots[old_slots.index(recovery)]
    backup = backup_header(device, load_policy().volumes.header_backup_dir, record.name)
    now = utc_now()
    update_record(
        record.name,
        profile=profile or record.profile,
        recovery_keyslot=recovery,
        last_key_change=now,
        header_backup=str(backup),
        header_backup_time=now,
        extra=extra,
    )
    return header
