"""Which device-mapper mappings sit on a device, read from sysfs.

sysfs answers even where device-mapper is missing or no udev runs, unlike `cryptsetup status`.
A dm-crypt mapping made by cryptsetup has a dm UUID "CRYPT-<TYPE>-<uuid hex>-<name>".
"""

from dataclasses import dataclass
from pathlib import Path

SYS_CLASS_BLOCK = Path("/sys/class/block")


@dataclass(frozen=True)
class DmMapping:
    name: str
    kernel_name: str  # dm-N
    dm_uuid: str

    @property
    def path(self) -> Path:
        return Path("/dev/mapper") / self.name

    @property
    def is_crypt(self) -> bool:
        return self.dm_uuid.startswith("CRYPT-")


def _read(path: Path) -> str:
    try:
        return path.read_text().strip()
    except OSError:
        return ""


def dm_mapping(kernel_name: str, sys_root: Path = SYS_CLASS_BLOCK) -> DmMapping | None:
    """The mapping that the dm-N device `kernel_name` is, or None if it is not one."""
    dm_dir = sys_root / kernel_name / "dm"
    if not dm_dir.is_dir():
        return None
    return DmMapping(_read(dm_dir / "name"), kernel_name, _read(dm_dir / "uuid"))


def holders(kernel_name: str, sys_root: Path = SYS_CLASS_BLOCK) -> list[DmMapping]:
    """Mappings stacked directly on the device `kernel_name` (e.g. loop0, sda2)."""
    holder_dir = sys_root / kernel_name / "holders"
    if not holder_dir.is_dir():
        return []
    found = (dm_mapping(entry.name, sys_root) for entry in sorted(holder_dir.iterdir()))
    return [mapping for mapping in found if mapping is not None]


def slaves(kernel_name: str, sys_root: Path = SYS_CLASS_BLOCK) -> list[str]:
    """Kernel names of the devices a mapping sits on."""
    slave_dir = sys_root / kernel_name / "slaves"
    return sorted(entry.name for entry in slave_dir.iterdir()) if slave_dir.is_dir() else []


def luks_mapping(luks_uuid: str, sys_root: Path = SYS_CLASS_BLOCK) -> DmMapping | None:
    """The open volume mapping of the LUKS volume `luks_uuid`, found by its dm UUID: during an
    online re-encryption it is not a direct holder of the device (helper mappings sit between)."""
    prefix = f"-{luks_uuid.replace('-', '')}-"
    for entry in sorted(sys_root.glob("dm-*")):
        mapping = dm_mapping(entry.name, sys_root)
        if mapping and mapping.dm_uuid.startswith("CRYPT-LUKS") and prefix in mapping.dm_uuid:
            return mapping
    return None
