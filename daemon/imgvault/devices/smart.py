"""Drive identity and health from SMART, through pySMART.

pySMART parses smartctl's output; we give it a Smartctl whose commands go through
`imgvault.system.run` (the one runner: C locale, minimal environment, and a timeout, so a hung
drive cannot hang `imgvaultctl status`).
"""

import subprocess
from dataclasses import asdict, dataclass
from typing import Any

from pySMART import Device
from pySMART.smartctl import Smartctl

from imgvault.errors import ImgvaultError
from imgvault.system.run import run, which

DEFAULT_TIMEOUT = 15.0

# ATA attributes whose normalized value counts down from 100 as the flash wears out; the first
# one a drive has wins.
_ATA_WEAR_ATTRIBUTES = (
    (233, "Media_Wearout_Indicator"),
    (231, "SSD_Life_Left"),
    (202, "Percent_Lifetime_Remain"),
    (177, "Wear_Leveling_Count"),
)


class SmartTimeoutError(ImgvaultError):
    pass


class _RunSmartctl(Smartctl):  # type: ignore[misc]  # pySMART has no type information
    """pySMART's Smartctl, executing through imgvault.system.run with a timeout."""

    def __init__(self, timeout: float) -> None:
        super().__init__(smartctl_path=which("smartctl"))
        self.timeout = timeout

    def _exec(self, cmd: list[str]) -> tuple[list[str], int]:
        try:
            result = run(cmd, timeout=self.timeout)
        except subprocess.TimeoutExpired:
            raise SmartTimeoutError(
                f"smartctl did not answer within {self.timeout:.0f} s",
                "the drive may be hung or spun down; retry, or check `dmesg` for I/O errors",
            ) from None
        return result.stdout.splitlines(), result.returncode


@dataclass(frozen=True)
class SmartHealth:
    model: str | None = None
    serial: str | None = None
    firmware: str | None = None
    interface: str | None = None  # smartctl's device type: nvme, sat, scsi, ...
    media: str | None = None  # "SSD", "HDD" or None when unknown
    assessment: str | None = None  # pySMART: PASS, WARN or FAIL
    temperature_c: int | None = None
    power_on_hours: int | None = None
    wear_percent_used: int | None = None
    wear_source: str | None = None
    problem: str | None = None  # why SMART could not be read

    @property
    def health(self) -> str:
        """PASSED / FAILED / WARNING, or 'unknown: <why>'."""
        verdicts = {"PASS": "PASSED", "FAIL": "FAILED", "WARN": "WARNING"}
        if self.assessment in verdicts:
            return verdicts[self.assessment]
        return f"unknown: {self.problem or 'no SMART health assessment'}"

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "health": self.health}


def _ata_wear(device: Any) -> tuple[int | None, str | None]:
    by_number = {a.num: a for a in device.attributes if a is not None}
    for number, name in _ATA_WEAR_ATTRIBUTES:
        attribute = by_number.get(number)
        if attribute is not None:
            return max(0, 100 - attribute.value_int), f"ATA attribute {number} {name}"
    return None, None


def health_from_device(device: Any) -> SmartHealth:
    """Map a populated pySMART Device to SmartHealth (pure: tests feed recorded output)."""
    if device.interface is None:
        return SmartHealth(
            problem="no SMART: smartctl cannot identify the device type (virtio and most USB "
            "bridges have none)"
        )
    hours: int | None = None
    wear: int | None = None
    wear_source: str | None = None
    attrs = device.if_attributes
    if device.interface == "nvme" and attrs is not None:
        hours = attrs.powerOnHours
        wear = attrs.percentageUsed
        wear_source = "NVMe Percentage Used" if wear is not None else None
    else:
        power_on = next((a for a in device.attributes if a is not None and a.num == 9), None)
        hours = power_on.raw_int if power_on is not None else None
        if device.is_ssd:
            wear, wear_source = _ata_wear(device)
    media = None
    if device.is_ssd:
        media = "SSD"
    elif device.rotation_rate:
        media = "HDD"
    return SmartHealth(
        model=device.model,
        serial=device.serial,
        firmware=device.firmware,
        interface=device.interface,
        media=media,
        assessment=device.assessment,
        temperature_c=device.temperature,
        power_on_hours=hours,
        wear_percent_used=wear,
        wear_source=wear_source,
        problem=None if device.assessment else "the drive reports no SMART health status",
    )


def read_smart(path: str, timeout: float = DEFAULT_TIMEOUT) -> SmartHealth:
    """SMART identity and health of the drive at `path`; never raises for a drive that has no
    SMART (the reason is in `problem`), raises ToolMissingError if smartctl is not installed."""
    try:
        device = Device(path, smartctl=_RunSmartctl(timeout))
    except SmartTimeoutError as error:
        return SmartHealth(problem=error.message)
    return health_from_device(device)
