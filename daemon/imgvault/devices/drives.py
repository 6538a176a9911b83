"""Drive inventory: per physical drive, its self-encryption (TCG) status, SMART health and the
policy warnings an admin must see ("Pyrite: no media encryption", "OPAL locking not enabled").

Only whole drives are listed (not partitions, loop or device-mapper devices). How a drive is
attached decides what can be asked: NVMe and SATA/SAS answer security commands, a USB bridge
usually swallows them (so we say so rather than report "no SED"), and a virtio disk is the
hypervisor's: it has neither TCG nor SMART.
"""

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyudev

from imgvault.devices.security_transport import SecurityProbe, probe_security
from imgvault.devices.smart import DEFAULT_TIMEOUT, SmartHealth, read_smart
from imgvault.errors import ImgvaultError
from imgvault.system.run import ToolMissingError

# Kernel names of whole-disk block devices that are drives (or stand in for one).
_DRIVE_NAME = re.compile(r"^(sd[a-z]+|nvme\d+n\d+|vd[a-z]+|xvd[a-z]+|hd[a-z]+|mmcblk\d+)$")
ENCRYPTING_SSCS = {"Opal 2", "Opal 1", "Enterprise", "Ruby", "Opalite"}
USB_BRIDGE = "behind a USB bridge: security commands do not pass"
WEAR_WARNING_PERCENT = 90


class DriveNotFoundError(ImgvaultError):
    exit_code = 4


@dataclass(frozen=True)
class SedStatus:
    """The verdict on a drive's hardware encryption."""

    kind: str  # Opal 2, Opal 1, Enterprise, Ruby, Opalite, Pyrite 1/2, none, unknown
    reason: str | None = None  # for none/unknown: why
    locking_supported: bool | None = None
    locking_enabled: bool | None = None
    locked: bool | None = None
    media_encryption: bool | None = None
    mbr_enabled: bool | None = None
    mbr_done: bool | None = None
    probe: SecurityProbe | None = None

    @property
    def mbr_shadow(self) -> str:
        if self.mbr_enabled is None:
            return "-"
        if not self.mbr_enabled:
            return "off"
        return "on, done" if self.mbr_done else "on, not done"

    def summary(self) -> str:
        if self.kind in ("none", "unknown"):
            return f"{self.kind}: {self.reason}" if self.reason else self.kind
        return self.kind

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "reason": self.reason,
            "locking_supported": self.locking_supported,
            "locking_enabled": self.locking_enabled,
            "locked": self.locked,
            "media_encryption": self.media_encryption,
            "mbr_enabled": self.mbr_enabled,
            "mbr_done": self.mbr_done,
            "probe": None if self.probe is None else self.probe.to_json(),
        }


@dataclass(frozen=True)
class DriveReport:
    name: str
    path: str
    bus: str  # nvme, ata, scsi, usb, virtio, other
    size_bytes: int
    model: str | None
    serial: str | None
    sed: SedStatus
    smart: SmartHealth
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "path": self.path,
            "bus": self.bus,
            "size_bytes": self.size_bytes,
            "model": self.model,
            "serial": self.serial,
            "sed": self.sed.to_json(),
            "smart": self.smart.to_json(),
            "warnings": self.warnings,
        }


def sed_status(probe: SecurityProbe) -> SedStatus:
    """Reduce what the drive said to a verdict (pure)."""
    discovery = probe.discovery
    if discovery is None:
        problem = probe.problem or "no answer"
        kind = "none" if problem.startswith("no TCG") else "unknown"
        return SedStatus(kind=kind, reason=problem, probe=probe)
    ssc = discovery.ssc
    locking = discovery.locking
    return SedStatus(
        kind=ssc.ssc_name if ssc else "unknown",
        reason=None if ssc else "TCG responds, but no Security Subsystem Class is listed",
        locking_supported=locking.locking_supported if locking else None,
        locking_enabled=locking.locking_enabled if locking else None,
        locked=locking.locked if locking else None,
        media_encryption=locking.media_encryption if locking else None,
        mbr_enabled=locking.mbr_enabled if locking else None,
        mbr_done=locking.mbr_done if locking else None,
        probe=probe,
    )


def policy_warnings(bus: str, sed: SedStatus, smart: SmartHealth) -> list[str]:
    """The warnings an admin must act on (pure)."""
    warnings = []
    if bus == "usb":
        warnings.append(f"{USB_BRIDGE}; connect the drive by SATA/NVMe to see its SED status")
    if sed.kind.startswith("Pyrite"):
        warnings.append("Pyrite: no media encryption (access control only; data is plaintext)")
    elif sed.kind in ENCRYPTING_SSCS:
        if sed.media_encryption is False:
            warnings.append(f"{sed.kind}: the drive reports no media encryption")
        if not sed.locking_enabled:
            name = "OPAL" if sed.kind.startswith("Opal") else sed.kind
            warnings.append(
                f"{name} locking not enabled: hardware encryption gives no protection at rest"
            )
    elif sed.kind == "none":
        warnings.append("not a self-encrypting drive: protect data at rest with LUKS")
    if smart.assessment == "FAIL":
        warnings.append("SMART health FAILED: back up now and replace the drive")
    elif smart.assessment == "WARN":
        warnings.append("SMART health WARNING: check `smartctl -a` and plan a replacement")
    if smart.wear_percent_used is not None and smart.wear_percent_used >= WEAR_WARNING_PERCENT:
        warnings.append(f"SSD wear: {smart.wear_percent_used}% of rated endurance used")
    return warnings


def classify_bus(name: str, sys_path: str, properties: dict[str, str]) -> str:
    """How the drive is attached, from its kernel name, sysfs path and udev properties."""
    if properties.get("ID_BUS") == "usb" or "/usb" in sys_path:
        return "usb"
    if name.startswith("nvme"):
        return "nvme"
    if name.startswith("vd"):  # virtio-blk; an sd* disk under virtio-scsi is SCSI and is asked
        return "virtio"
    if name.startswith("sd"):
        vendor = Path(sys_path, "device", "vendor")
        is_ata = vendor.is_file() and vendor.read_text().strip() == "ATA"
        return "ata" if is_ata or properties.get("ID_BUS") == "ata" else "scsi"
    return "other"


_NO_QUERY = {
    "usb": USB_BRIDGE,
    "virtio": "virtio disk: no security commands",
    "other": "no security command path for this kind of device",
}


def query_security(path: str, bus: str) -> SedStatus:
    if bus in _NO_QUERY:
        return SedStatus(kind="unknown", reason=_NO_QUERY[bus])
    try:
        return sed_status(
            probe_security(path, "nvme" if bus == "nvme" else "scsi", ata=bus == "ata")
        )
    except OSError as error:
        return SedStatus(kind="unknown", reason=f"cannot open {path}: {error.strerror}")
    except ImgvaultError as error:
        return SedStatus(kind="unknown", reason=error.message)


def _attribute(device: pyudev.Device, name: str) -> str | None:
    try:
        value: str = device.attributes.asstring(name).strip()
    except (KeyError, UnicodeDecodeError):
        return None
    return value or None


def _report(device: pyudev.Device, smart_timeout: float) -> DriveReport:
    name = device.sys_name
    path = device.device_node or f"/dev/{name}"
    props = dict(device.properties)
    bus = classify_bus(name, os.path.realpath(device.sys_path), props)
    if os.geteuid() != 0:
        why = "run as root to query the drive"
        sed, smart = SedStatus(kind="unknown", reason=why), SmartHealth(problem=why)
    else:
        sed = query_security(path, bus)
        try:
            smart = read_smart(path, smart_timeout)
        except ToolMissingError as error:
            smart = SmartHealth(problem=f"{error.message}; {error.hint}")
    return DriveReport(
        name=name,
        path=path,
        bus=bus,
        size_bytes=int(_attribute(device, "size") or 0) * 512,
        model=props.get("ID_MODEL") or _attribute(device, "device/model") or smart.model,
        serial=props.get("ID_SERIAL_SHORT")
        or _attribute(device, "device/serial")
        or _attribute(device, "serial")
        or smart.serial,
        sed=sed,
        smart=smart,
        warnings=policy_warnings(bus, sed, smart),
    )


def _drive_devices() -> list[pyudev.Device]:
    context = pyudev.Context()
    return sorted(
        (
            d
            for d in context.list_devices(subsystem="block", DEVTYPE="disk")
            if _DRIVE_NAME.match(d.sys_name) and int(_attribute(d, "size") or 0) > 0
        ),
        key=lambda d: d.sys_name,
    )


def list_drives(smart_timeout: float = DEFAULT_TIMEOUT) -> list[DriveReport]:
    """Every drive on the host with its SED status, health and warnings."""
    return [_report(device, smart_timeout) for device in _drive_devices()]


def show_drive(path: str, smart_timeout: float = DEFAULT_TIMEOUT) -> DriveReport:
    """One drive, named by /dev path or kernel name."""
    name = Path(path).name
    for device in _drive_devices():
        if device.sys_name == name or device.device_node == path:
            return _report(device, smart_timeout)
    raise DriveNotFoundError(
        f"{path} is not a drive",
        "name a whole drive (e.g. /dev/sda or /dev/nvme0n1, not a partition); "
        "`imgvaultctl drive list` shows them",
    )
