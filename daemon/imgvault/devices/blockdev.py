"""Facts about one block device that decide whether imgvault may touch it: its sector sizes,
whether it (or a partition of it) is mounted or held by a mapping, and which processes have
files open on it. Read from sysfs and /proc, which answer without udev or device-mapper."""

import contextlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path

from imgvault.devices.inventory import MOUNTINFO, mountpoints_by_devno
from imgvault.errors import ImgvaultError
from imgvault.volumes.errors import DeviceMissingError
from imgvault.volumes.mappings import SYS_CLASS_BLOCK, DmMapping, dm_mapping, holders

PROC = Path("/proc")
SYS_DEV_BLOCK = Path("/sys/dev/block")


class NotBlockDeviceError(ImgvaultError):
    exit_code = 4


@dataclass(frozen=True)
class BlockInfo:
    path: Path
    kernel_name: str  # loop0, sda2, dm-3
    devno: str  # "major:minor", as /proc/self/mountinfo spells it
    logical_block_size: int
    physical_block_size: int
    size_bytes: int

    def partitions(self, sys_root: Path = SYS_CLASS_BLOCK) -> list[str]:
        """Kernel names of this device's partitions (sda1, loop0p1, ...)."""
        base = sys_root / self.kernel_name
        if not base.is_dir():
            return []
        return sorted(p.name for p in base.iterdir() if (p / "partition").exists())

    def mountpoints(self) -> list[str]:
        """Where this device or one of its partitions is mounted."""
        mounts = mountpoints_by_devno(MOUNTINFO)
        found = list(mounts.get(self.devno, []))
        for part in self.partitions():
            found += mounts.get(_read(SYS_CLASS_BLOCK / part / "dev"), [])
        return found

    def holders(self) -> list[DmMapping]:
        """Device-mapper mappings on this device or one of its partitions."""
        found = holders(self.kernel_name)
        for part in self.partitions():
            found += holders(part)
        return found

    def users(self) -> list[str]:
        """What holds this device or a partition of it: mappings, RAID arrays, active swap."""
        names = [self.kernel_name, *self.partitions()]
        found = []
        for name in names:
            holder_dir = SYS_CLASS_BLOCK / name / "holders"
            if holder_dir.is_dir():
                found += [_describe_holder(h.name) for h in sorted(holder_dir.iterdir())]
        for line in _read(PROC / "swaps").splitlines()[1:]:
            swap = line.split()[0]
            if Path(swap).name in names or swap == str(self.path):
                found.append(f"active swap {swap}")
        return found


def _describe_holder(kernel_name: str) -> str:
    mapping = dm_mapping(kernel_name)
    if mapping is not None:
        return f"device-mapper mapping {mapping.name}"
    return f"/dev/{kernel_name}"


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def block_info(device: str | Path) -> BlockInfo:
    """Describe the block device at `device`, or say clearly why it is not one."""
    path = Path(device)
    try:
        st = path.stat()
    except FileNotFoundError:
        raise DeviceMissingError(
            f"{path} does not exist",
            "check the path ('imgvaultctl status' lists block devices)",
        ) from None
    if not stat.S_ISBLK(st.st_mode):
        raise NotBlockDeviceError(
            f"{path} is not a block device",
            "give a disk, partition or loop device (losetup --find --show FILE makes one "
            "from an image file)",
        )
    devno = f"{os.major(st.st_rdev)}:{os.minor(st.st_rdev)}"
    sys_dir = (SYS_DEV_BLOCK / devno).resolve()
    queue = sys_dir / "queue" if (sys_dir / "queue").is_dir() else sys_dir.parent / "queue"
    return BlockInfo(
        path=path,
        kernel_name=sys_dir.name,
        devno=devno,
        logical_block_size=int(_read(queue / "logical_block_size") or 512),
        physical_block_size=int(_read(queue / "physical_block_size") or 512),
        size_bytes=int(_read(sys_dir / "size") or 0) * 512,
    )


def devno_of(kernel_name: str) -> str:
    return _read(SYS_CLASS_BLOCK / kernel_name / "dev")


@dataclass(frozen=True)
class ProcessUse:
    pid: int
    command: str
    path: str  # the open file, working directory or mapped file on the device


def processes_using(devno: str, proc: Path = PROC) -> list[ProcessUse]:
    """Processes with a file open, a working or root directory, or a mapped file on the file
    system of device `devno`, or the device node itself open (what `fuser -m` reports), one
    entry per process."""
    major, minor = (int(n) for n in devno.split(":"))
    wanted = os.makedev(major, minor)
    maps_dev = f"{major:02x}:{minor:02x}"
    found: list[ProcessUse] = []
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        path = _use_in_links(entry, wanted) or _use_in_maps(entry, maps_dev)
        if path is not None:
            command = _read(entry / "comm") or "?"
            found.append(ProcessUse(pid=int(entry.name), command=command, path=path))
    return found


def _use_in_links(entry: Path, wanted: int) -> str | None:
    links = [entry / "cwd", entry / "root", entry / "exe"]
    with contextlib.suppress(OSError):  # the process ended meanwhile
        links += sorted((entry / "fd").iterdir())
    for link in links:
        try:
            st = link.stat()
            on_device = st.st_dev == wanted
            is_device = stat.S_ISBLK(st.st_mode) and st.st_rdev == wanted
            if on_device or is_device:
                return str(link.readlink())
        except OSError:
            continue
    return None


def _use_in_maps(entry: Path, maps_dev: str) -> str | None:
    """A file of the device mapped into memory (its descriptor may be closed already)."""
    for line in _read(entry / "maps").splitlines():
        fields = line.split(maxsplit=5)
        if len(fields) == 6 and fields[3] == maps_dev:
            return fields[5]
    return None
