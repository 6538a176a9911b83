"""Every block device on the host, with its size, identity, mounts and encryption.

Devices are enumerated with pyudev (libudev reads sysfs, so this works with no udev daemon, as
on the development VMs). What only the udev database knows (ID_FS_TYPE, ID_MODEL, ...) falls
back to sysfs attributes and a `blkid` probe when no udev daemon has filled it in.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyudev

from imgvault.errors import ImgvaultError
from imgvault.system.run import ToolMissingError
from imgvault.volumes.cryptsetup import probe_identity, read_header
from imgvault.volumes.luks import LuksHeader
from imgvault.volumes.mappings import DmMapping, dm_mapping, holders, slaves

MOUNTINFO = Path("/proc/self/mountinfo")


@dataclass
class BlockDevice:
    name: str  # kernel name: sda, nvme0n1p2, loop0, dm-3
    path: str
    kind: str  # disk, partition, loop, crypt (an open dm-crypt mapping), dm
    size_bytes: int
    model: str | None = None
    serial: str | None = None
    backing_file: str | None = None
    mountpoints: list[str] = field(default_factory=list)
    filesystem: str | None = None
    encryption: LuksHeader | None = None
    # For a LUKS device: its open dm-crypt mapping. For a mapping: the devices under it.
    mapping: DmMapping | None = None
    underlying: list[str] = field(default_factory=list)
    problem: str | None = None  # why something could not be read (e.g. not root)

    @property
    def encryption_state(self) -> str:
        if self.encryption is None:
            return "unknown" if self.problem else "not encrypted"
        return f"open as {self.mapping.path}" if self.mapping else "closed"

    def encryption_summary(self) -> str:
        if self.kind == "crypt":
            return f"dm-crypt mapping of {', '.join(self.underlying)}"
        if self.encryption is None:
            return self.problem or "not encrypted"
        return (
            f"{self.encryption.format_name} {self.encryption.cipher_description}; "
            f"{self.encryption_state}"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "type": self.kind,
            "size_bytes": self.size_bytes,
            "model": self.model,
            "serial": self.serial,
            "backing_file": self.backing_file,
            "mountpoints": self.mountpoints,
            "filesystem": self.filesystem,
            "encrypted": self.encryption is not None,
            "encryption": (
                None
                if self.encryption is None
                else {
                    **self.encryption.to_json(),
                    "state": "open" if self.mapping else "closed",
                    "mapping": (
                        None
                        if self.mapping is None
                        else {"name": self.mapping.name, "path": str(self.mapping.path)}
                    ),
                }
            ),
            "underlying": self.underlying,
            "problem": self.problem,
        }


_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape_mount_path(path: str) -> str:
    """mountinfo escapes space, tab, newline and backslash as octal (\\040 ...)."""
    return _OCTAL_ESCAPE.sub(lambda match: chr(int(match.group(1), 8)), path)


def mountpoints_by_devno(mountinfo: Path = MOUNTINFO) -> dict[str, list[str]]:
    """'major:minor' -> mount points, from the kernel's mount table."""
    mounts: dict[str, list[str]] = {}
    for line in mountinfo.read_text().splitlines():
        fields = line.split()
        mounts.setdefault(fields[2], []).append(_unescape_mount_path(fields[4]))
    return mounts


def _sys_attr(device: pyudev.Device, *names: str) -> str | None:
    for name in names:
        try:
            value: str = device.attributes.asstring(name).strip()
        except (KeyError, UnicodeDecodeError):
            continue
        if value:
            return value
    return None


def _kind(device: pyudev.Device) -> str:
    if device.sys_name.startswith("loop"):
        return "loop"
    if device.sys_name.startswith("dm-"):
        mapping = dm_mapping(device.sys_name)
        return "crypt" if mapping is not None and mapping.is_crypt else "dm"
    return "partition" if device.device_type == "partition" else "disk"


def _describe(device: pyudev.Device, mounts: dict[str, list[str]]) -> BlockDevice:
    sys_name = device.sys_name
    props = device.properties
    kind = _kind(device)
    mapping = dm_mapping(sys_name) if kind in ("crypt", "dm") else None
    block = BlockDevice(
        name=sys_name,
        path=str(mapping.path) if mapping else (device.device_node or f"/dev/{sys_name}"),
        kind=kind,
        size_bytes=int(_sys_attr(device, "size") or 0) * 512,
        model=props.get("ID_MODEL") or _sys_attr(device, "device/model"),
        serial=props.get("ID_SERIAL_SHORT") or _sys_attr(device, "device/serial", "serial"),
        backing_file=_sys_attr(device, "loop/backing_file"),
        mountpoints=mounts.get(f"{props.get('MAJOR')}:{props.get('MINOR')}", []),
        underlying=[f"/dev/{name}" for name in slaves(sys_name)] if mapping else [],
    )
    if kind == "crypt":
        return block
    block.filesystem = props.get("ID_FS_TYPE")
    try:
        if block.filesystem is None:
            block.filesystem = probe_identity(block.path).get("TYPE")
        if block.filesystem == "crypto_LUKS":
            block.encryption = read_header(block.path)
            block.mapping = next((m for m in holders(sys_name) if m.is_crypt), None)
    except ToolMissingError:
        raise
    except ImgvaultError as error:
        block.problem = (
            "unknown: run as root to read headers" if os.geteuid() != 0 else error.message
        )
    return block


def list_block_devices() -> list[BlockDevice]:
    """All block devices with a size (unattached loop devices and empty drives are left out)."""
    context = pyudev.Context()
    mounts = mountpoints_by_devno()
    devices = [
        _describe(device, mounts)
        for device in context.list_devices(subsystem="block")
        if int(_sys_attr(device, "size") or 0) > 0
    ]
    return sorted(devices, key=lambda d: (d.kind == "crypt", d.name))
