"""The volume lifecycle engine: format, unlock, lock and list the volumes imgvault manages.

The CLI and the daemon call these; they never print or prompt. Every check that can refuse an
operation runs before the first write, so a refused command leaves the disk as it was.
"""

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from imgvault.devices.blockdev import BlockInfo, block_info, devno_of, processes_using
from imgvault.devices.inventory import MOUNTINFO, mountpoints_by_devno
from imgvault.errors import ImgvaultError
from imgvault.policy import Profile, load_policy
from imgvault.secret import Secret
from imgvault.system.run import run
from imgvault.volumes import cryptsetup
from imgvault.volumes.errors import (
    DeviceBusyError,
    OutOfMemoryError,
    no_device_mapper,
)
from imgvault.volumes.header_backup import backup_header
from imgvault.volumes.luks import LuksHeader, Pbkdf
from imgvault.volumes.mappings import DmMapping
from imgvault.volumes.recovery import RecoveryTarget
from imgvault.volumes.registry import VolumeRecord, load_registry, save_registry
from imgvault.volumes.resolve import VolumeTarget, current_device, utc_now

# The name is also the default LUKS2 label, which holds 47 characters at most.
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,46}$")
LABEL_MAX = 47
# cryptsetup refuses a larger argon2 memory cost outright.
ARGON2_MAX_MEMORY_KIB = 4 * 1024 * 1024
MEMINFO = Path("/proc/meminfo")
# Present when the kernel has device-mapper (/dev/mapper/control may exist without it).
DM_MISC_DEVICE = Path("/sys/class/misc/device-mapper")


class VolumeError(ImgvaultError):
    pass


class DataPresentError(VolumeError):
    exit_code = 5


class VolumeInUseError(VolumeError):
    exit_code = 5


# --- format -------------------------------------------------------------------------------


@dataclass
class FormatRequest:
    device: Path
    name: str
    key: Secret
    profile: Profile
    label: str | None = None
    sector_size: int | None = None  # None: from the profile and the device
    pbkdf_memory_kib: int | None = None  # None: the profile's
    force: bool = False  # the admin confirmed that existing data may be destroyed
    recovery: RecoveryTarget = field(default_factory=RecoveryTarget)
    mkfs: str | None = None
    mountpoint: Path | None = None


@dataclass
class FormatResult:
    record: VolumeRecord
    header: LuksHeader
    sector_size_reason: str
    recovery_keyslot: int
    recovery_key: Secret | None  # only when it is to be shown (kind "show")
    recovery_file: Path | None
    header_backup: Path


def existing_data(info: BlockInfo) -> list[str]:
    """What `volume format` would destroy on the device, in words ([] for a blank device)."""
    found = []
    identity = cryptsetup.probe_identity(info.path)
    kind = identity.get("TYPE")
    if kind == "crypto_LUKS":
        found.append(f"a LUKS{identity.get('VERSION', '')} header (UUID {identity.get('UUID')})")
    elif kind:
        label = f", label {identity['LABEL']!r}" if identity.get("LABEL") else ""
        found.append(f"a {kind} file system or signature{label}")
    if identity.get("PTTYPE"):
        found.append(f"a {identity['PTTYPE']} partition table")
    parts = info.partitions()
    if parts:
        found.append(f"partitions {', '.join(parts)}")
    return found


def check_not_in_use(info: BlockInfo) -> None:
    """Refuse a mounted device, or one held by a mapping, a RAID array or swap: --force never
    overrides this."""
    mounted = info.mountpoints()
    if mounted:
        raise DeviceBusyError(
            f"{info.path} is mounted on {', '.join(mounted)}",
            "unmount it first (and make sure it is the device you mean to erase)",
        )
    users = info.users()
    if users:
        raise DeviceBusyError(
            f"{info.path} is in use by {', '.join(users)}",
            "lock the volume ('imgvaultctl volume lock'), stop the array or swapoff first",
        )


def inspect_for_format(device: Path, force: bool) -> tuple[BlockInfo, list[str]]:
    """The device and the data a format would destroy; refuses a device in use, and one that
    holds data unless `force`."""
    info = block_info(device)
    check_not_in_use(info)
    found = existing_data(info)
    if found and not force:
        raise DataPresentError(
            f"{info.path} holds {'; '.join(found)}",
            "formatting destroys it: check the device, then add --force (and confirm, or --yes)",
        )
    return info, found


def choose_sector_size(profile: Profile, info: BlockInfo, requested: int | None) -> tuple[int, str]:
    """The encryption sector size and why. cryptsetup accepts 4096 even on a device with
    512-byte physical sectors, where a power cut could tear one encryption sector; like
    cryptsetup's own default, imgvault uses 4096 only where the hardware writes 4096."""
    if requested is not None:
        if requested not in (512, 1024, 2048, 4096):
            raise VolumeError(
                f"invalid sector size {requested}", "use 512 or 4096 (powers of two, 512-4096)"
            )
        if requested < info.logical_block_size:
            raise VolumeError(
                f"sector size {requested} is below the device's logical block size "
                f"{info.logical_block_size}",
                f"use --sector-size {info.logical_block_size}",
            )
        return requested, "requested with --sector-size"
    wanted = profile.sector_size
    if wanted <= 512:
        return 512, f"profile {profile.name} asks for 512"
    if info.logical_block_size >= wanted or info.physical_block_size >= wanted:
        if info.size_bytes % wanted == 0:
            return wanted, (
                f"device sectors are {info.logical_block_size}/{info.physical_block_size} bytes "
                "(logical/physical)"
            )
        return info.logical_block_size, f"device size is not a multiple of {wanted}"
    return 512, (
        f"device has {info.physical_block_size}-byte physical sectors; {wanted} could tear "
        "on power loss"
    )


def available_memory_kib() -> int:
    for line in MEMINFO.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


def check_pbkdf_memory(memory_kib: int | None, kind: str) -> None:
    """Refuse an argon2 memory cost this machine cannot give before anything is written:
    a keyslot that needs more memory than the host has could never be opened here."""
    if memory_kib is None or not kind.startswith("argon2"):
        return
    hint = (
        "lower it (--pbkdf-memory KIB or pbkdf_memory_kib in the policy); the shipped "
        "profiles use 1048576 (1 GiB)"
    )
    if memory_kib > ARGON2_MAX_MEMORY_KIB:
        raise OutOfMemoryError(
            f"PBKDF memory cost {memory_kib} KiB is above cryptsetup's maximum "
            f"{ARGON2_MAX_MEMORY_KIB} KiB",
            hint,
        )
    available = available_memory_kib()
    if memory_kib > available:
        raise OutOfMemoryError(
            f"PBKDF memory cost {memory_kib} KiB is more than this machine can give "
            f"({available} KiB available)",
            hint,
        )


def _check_name(name: str, device: Path, records: dict[str, VolumeRecord], force: bool) -> None:
    if not _NAME.match(name):
        raise VolumeError(
            f"invalid volume name {name!r}",
            "use up to 47 letters, digits, '.', '_', '+' or '-', starting with a letter or digit",
        )
    other = records.get(name)
    if other is not None and not (force and other.device == str(device)):
        raise VolumeError(
            f"a volume named {name!r} is already registered (on {other.device})",
            "choose another --name; 'imgvaultctl volume list' shows the registered ones",
        )


def _check_request(request: FormatRequest, info: BlockInfo) -> tuple[Pbkdf, int, str]:
    """Everything about a format request that can be wrong, checked before the first write;
    returns the PBKDF, the sector size and why."""
    _check_name(request.name, info.path, load_registry(), request.force)
    if len(request.key) == 0:
        raise VolumeError("the passphrase is empty", "give a non-empty passphrase")
    if request.label is not None and len(request.label.encode()) > LABEL_MAX:
        raise VolumeError(f"the label is longer than {LABEL_MAX} bytes", "give a shorter --label")
    if request.mountpoint is not None and not request.mountpoint.is_absolute():
        raise VolumeError(
            f"mount point {request.mountpoint} is not an absolute path",
            f"give the full path, e.g. {Path.cwd() / request.mountpoint}",
        )
    pbkdf = request.profile.pbkdf_setting(request.pbkdf_memory_kib)
    check_pbkdf_memory(pbkdf.memory_kib, pbkdf.kind)
    sector_size, reason = choose_sector_size(request.profile, info, request.sector_size)
    if request.mkfs not in (None, "ext4"):
        raise VolumeError(f"unsupported file system {request.mkfs!r}", "use --mkfs ext4")
    if request.mkfs and not DM_MISC_DEVICE.exists():
        raise no_device_mapper(f"--mkfs {request.mkfs} needs the volume opened")
    request.recovery.check()
    return pbkdf, sector_size, reason


def format_volume(request: FormatRequest) -> FormatResult:
    """Encrypt a device: LUKS2 header with the profile, the first passphrase in keyslot 0, a
    recovery key in its own keyslot, a header backup, a registry record; optionally a file
    system. Refuses before writing anything if the device is in use or holds data and
    `force` is not set."""
    policy = load_policy()
    info, _ = inspect_for_format(request.device, request.force)
    pbkdf, sector_size, reason = _check_request(request, info)
    target = request.recovery
    recovery_key = target.issue()
    try:
        cryptsetup.luks_format(
            info.path,
            request.key,
            cipher=request.profile.cipher,
            key_bits=request.profile.key_bits,
            hash_name=request.profile.hash,
            pbkdf=pbkdf,
            sector_size=sector_size,
            label=request.label or request.name,
        )
        recovery_slot = cryptsetup.add_key(info.path, request.key, recovery_key, pbkdf=pbkdf)
    except BaseException:
        target.discard(recovery_key)
        raise
    header = cryptsetup.read_header(info.path)
    records = load_registry()
    stale = [n for n, r in records.items() if r.device == str(info.path)]
    for old in stale:
        del records[old]
    created = utc_now()
    record = VolumeRecord(
        name=request.name,
        uuid=header.uuid,
        device=str(info.path),
        profile=request.profile.name,
        created=created,
        mountpoint=str(request.mountpoint) if request.mountpoint else None,
        recovery_keyslot=recovery_slot,
        last_key_change=created,
    )
    records[record.name] = record
    save_registry(records)  # first: the volume exists now, whatever fails next
    backup = backup_header(info.path, policy.volumes.header_backup_dir, record.name)
    record.header_backup, record.header_backup_time = str(backup), utc_now()
    save_registry(records)
    if request.mkfs:
        _make_filesystem(record, request.key, request.mkfs)
        record.filesystem = request.mkfs
        save_registry(records)
    return FormatResult(
        record=record,
        header=header,
        sector_size_reason=reason,
        recovery_keyslot=recovery_slot,
        recovery_key=recovery_key if target.kind == "show" else None,
        recovery_file=target.path,
        header_backup=backup,
    )


def _make_filesystem(record: VolumeRecord, key: Secret, kind: str) -> None:
    mapped = cryptsetup.open_volume(record.device, record.name, key)
    try:
        run([f"mkfs.{kind}", "-q", "-L", record.name[:16], str(mapped)], check=True)
    finally:
        cryptsetup.close_volume(record.name)


# --- finding volumes ----------------------------------------------------------------------


def mapping_name(target: VolumeTarget) -> str:
    """The /dev/mapper name: the registered name, else `luks-UUID` as systemd names it."""
    if target.record is not None:
        return target.record.name
    return f"luks-{cryptsetup.read_header(target.device).uuid}"


def open_mapping(device: str | Path) -> DmMapping | None:
    """The dm-crypt mapping open on `device`, if any."""
    return next((m for m in block_info(device).holders() if m.is_crypt), None)


# --- unlock / lock ------------------------------------------------------------------------


@dataclass
class UnlockResult:
    target: VolumeTarget
    already: bool
    tested_only: bool
    keyslot: int | None
    mapping: Path | None
    mountpoint: str | None


def unlock_volume(
    target: VolumeTarget, key: Secret | None, *, test_only: bool = False
) -> UnlockResult:
    """Check `key` (`test_only`) or open the volume and mount its recorded mount point.
    Opening an open volume is not an error and needs no key: it reports `already` and mounts
    the volume if it is not mounted."""
    mapping = None if test_only else open_mapping(target.device)
    already = mapping is not None
    if mapping is not None:
        mapped = mapping.path
    elif key is None:
        raise VolumeError(
            f"{target.label} is locked: a key is needed", "give a passphrase or --key-file"
        )
    elif test_only:
        slot = cryptsetup.test_key(target.device, key)
        return UnlockResult(target, False, True, slot, None, None)
    else:
        mapped = cryptsetup.open_volume(target.device, mapping_name(target), key)
    mountpoint = target.record.mountpoint if target.record else None
    if mountpoint and not _mounted_at(mapped, mountpoint):
        try:
            Path(mountpoint).mkdir(mode=0o755, parents=True, exist_ok=True)
            run(["mount", "--", str(mapped), mountpoint], check=True)
        except (OSError, ImgvaultError) as error:
            if not already:
                cryptsetup.close_volume(mapped.name)
            raise VolumeError(
                f"{target.label} opened but could not be mounted on {mountpoint}: {error}",
                "check the file system (fsck) and the mount point; the volume was locked again",
            ) from None
    return UnlockResult(target, already, False, None, mapped, mountpoint)


def _mapped_devno(mapped: Path) -> str:
    return devno_of(mapped.resolve().name)


def _mounted_at(mapped: Path, mountpoint: str) -> bool:
    return mountpoint in mountpoints_by_devno(MOUNTINFO).get(_mapped_devno(mapped), [])


@dataclass
class LockResult:
    target: VolumeTarget
    already: bool
    unmounted: list[str]


def lock_volume(target: VolumeTarget) -> LockResult:
    """Unmount and close the volume; refuse, naming them, while processes use its files.
    Locking a locked volume is not an error."""
    mapping = open_mapping(target.device)
    if mapping is None:
        return LockResult(target, True, [])
    devno = devno_of(mapping.kernel_name)
    users = processes_using(devno)
    if users:
        listed = "; ".join(f"pid {u.pid} ({u.command}) {u.path}" for u in users)
        raise VolumeInUseError(
            f"{target.label} is in use: {listed}",
            "stop those processes (or 'fuser -vm' the mount point), then lock again",
        )
    mounted = mountpoints_by_devno(MOUNTINFO).get(devno, [])
    for mountpoint in reversed(mounted):
        result = run(["umount", "--", mountpoint])
        if not result.ok:
            raise VolumeInUseError(
                f"cannot unmount {mountpoint}: {result.stderr.strip()}",
                f"'fuser -vm {mountpoint}' names the processes using it",
            )
    cryptsetup.close_volume(mapping.name)
    return LockResult(target, False, mounted)


# --- list ---------------------------------------------------------------------------------


@dataclass
class VolumeState:
    record: VolumeRecord
    state: str  # locked, unlocked, missing
    device: str | None
    mapping: str | None
    mounted_on: list[str]


def list_volumes() -> list[VolumeState]:
    states = []
    for record in load_registry().values():
        try:
            device = current_device(record)
        except ImgvaultError:
            states.append(VolumeState(record, "missing", None, None, []))
            continue
        mapping = open_mapping(device)
        mounted: Sequence[str] = ()
        if mapping is not None:
            mounted = mountpoints_by_devno(MOUNTINFO).get(devno_of(mapping.kernel_name), [])
        states.append(
            VolumeState(
                record,
                "unlocked" if mapping else "locked",
                str(device),
                str(mapping.path) if mapping else None,
                list(mounted),
            )
        )
    return states
