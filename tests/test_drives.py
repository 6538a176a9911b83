"""Drive verdicts and policy warnings from the TCG fixtures, SMART from smartctl output recorded
in the QEMU guest (replayed through pySMART), bus classification, and the CLI on this machine
(whose only disk is virtio: no SMART, no security commands)."""

import json
from pathlib import Path

import pytest
from pySMART import Device
from pySMART.smartctl import Smartctl

from imgvault.cli import main as cli_main
from imgvault.devices import drives as drives_module
from imgvault.devices.drives import (
    SedStatus,
    classify_bus,
    policy_warnings,
    query_security,
    sed_status,
)
from imgvault.devices.security_transport import SecurityProbe
from imgvault.devices.smart import SmartHealth, health_from_device
from imgvault.devices.tcg_discovery import parse_discovery
from imgvault.system.run import ToolMissingError
from test_tcg_discovery import load_hex

SMART_FIXTURES = Path(__file__).parent / "fixtures" / "smart"
OPAL_OFF = "OPAL locking not enabled: hardware encryption gives no protection at rest"
HEALTHY = SmartHealth(assessment="PASS")


def _probe(fixture: str) -> SecurityProbe:
    discovery = parse_discovery(load_hex(fixture))
    return SecurityProbe("NVMe Security Receive", (0, 1, 2), discovery, None, (), None)


def test_factory_opal2_encrypts_but_protects_nothing() -> None:
    sed = sed_status(_probe("opal2-sedutil-realistic.hex"))
    assert (sed.kind, sed.locking_enabled, sed.locked, sed.media_encryption) == (
        "Opal 2",
        False,
        False,
        True,
    )
    assert sed.mbr_shadow == "off"
    assert policy_warnings("ata", sed, HEALTHY) == [OPAL_OFF]


def test_locked_opal2_with_mbr_shadow_has_no_warning() -> None:
    sed = sed_status(_probe("opal2-locked-all-features.hex"))
    assert (sed.kind, sed.locking_enabled, sed.locked) == ("Opal 2", True, True)
    assert sed.mbr_shadow == "on, not done"
    assert policy_warnings("nvme", sed, HEALTHY) == []


@pytest.mark.parametrize(
    ("fixture", "kind", "warnings"),
    [
        ("pyrite1.hex", "Pyrite 1", ["Pyrite: no media encryption"]),
        ("pyrite2.hex", "Pyrite 2", ["Pyrite: no media encryption"]),
        ("opal1.hex", "Opal 1", [OPAL_OFF]),
        ("enterprise.hex", "Enterprise", []),
        ("ruby.hex", "Ruby", []),
        ("opalite.hex", "Opalite", [OPAL_OFF]),
    ],
)
def test_kinds_and_their_warnings(fixture: str, kind: str, warnings: list[str]) -> None:
    sed = sed_status(_probe(fixture))
    assert sed.kind == kind
    found = policy_warnings("ata", sed, HEALTHY)
    assert len(found) == len(warnings)
    for prefix, warning in zip(warnings, found, strict=True):
        assert warning.startswith(prefix)


def test_no_tcg_is_none_and_other_failures_unknown() -> None:
    none = SecurityProbe("NVMe Security Receive", (), None, None, (), "no TCG security protocol")
    assert sed_status(none).kind == "none"
    assert sed_status(none).summary() == "none: no TCG security protocol"
    assert policy_warnings("nvme", sed_status(none), HEALTHY) == [
        "not a self-encrypting drive: protect data at rest with LUKS"
    ]
    failed = SecurityProbe("SCSI", None, None, None, (), "SG_IO: EIO")
    assert sed_status(failed).kind == "unknown"
    assert policy_warnings("scsi", sed_status(failed), HEALTHY) == []


def test_usb_bridge_gives_the_bridge_warning_not_a_verdict() -> None:
    assert classify_bus("sdb", "/sys/devices/pci0000:00/0000:00:14.0/usb2/2-1/host6", {}) == "usb"
    assert classify_bus("sdb", "/sys/devices/x", {"ID_BUS": "usb"}) == "usb"
    sed = query_security("/dev/sdb", "usb")
    assert sed.kind == "unknown"
    assert sed.reason == "behind a USB bridge: security commands do not pass"
    warnings = policy_warnings("usb", sed, SmartHealth(problem="no SMART"))
    assert warnings[0].startswith("behind a USB bridge: security commands do not pass")


def test_bus_classification(tmp_path: Path) -> None:
    assert classify_bus("nvme0n1", "/sys/devices/pci0000:00/nvme/nvme0/nvme0n1", {}) == "nvme"
    assert classify_bus("vda", "/sys/devices/pci0000:00/0000:00:04.0/virtio1/block/vda", {}) == (
        "virtio"
    )
    virtio_scsi = tmp_path / "virtio8" / "host0"
    (virtio_scsi / "device").mkdir(parents=True)
    (virtio_scsi / "device" / "vendor").write_text("QEMU    \n")
    assert classify_bus("sda", str(virtio_scsi), {}) == "scsi"
    (tmp_path / "device").mkdir()
    (tmp_path / "device" / "vendor").write_text("ATA     \n")
    assert classify_bus("sda", str(tmp_path), {}) == "ata"
    (tmp_path / "device" / "vendor").write_text("SEAGATE \n")
    assert classify_bus("sda", str(tmp_path), {}) == "scsi"
    assert classify_bus("mmcblk0", "/sys/devices/mmc", {}) == "other"


def test_smart_problems_and_wear_warnings() -> None:
    failing = SmartHealth(assessment="FAIL", wear_percent_used=95)
    sed = SedStatus(kind="unknown", reason="x")
    assert failing.health == "FAILED"
    assert policy_warnings("ata", sed, failing) == [
        "SMART health FAILED: back up now and replace the drive",
        "SSD wear: 95% of rated endurance used",
    ]
    assert SmartHealth(problem="timed out").health == "unknown: timed out"


class ReplaySmartctl(Smartctl):  # type: ignore[misc]
    """smartctl output recorded in the QEMU guest, replayed to pySMART."""

    def __init__(self, prefix: str) -> None:
        super().__init__(smartctl_path="/usr/sbin/smartctl")
        self.prefix = prefix

    def _exec(self, cmd: list[str]) -> tuple[list[str], int]:
        kind = "test" if "test" in cmd else "all"
        text = (SMART_FIXTURES / f"{self.prefix}-{kind}.txt").read_text()
        return text.splitlines(), 0


def test_smart_from_recorded_nvme_output() -> None:
    health = health_from_device(Device("/dev/nvme0n1", smartctl=ReplaySmartctl("qemu-nvme")))
    assert health == SmartHealth(
        model="QEMU NVMe Ctrl",
        serial="NVME0001",
        firmware=health.firmware,
        interface="nvme",
        media="SSD",
        assessment="PASS",
        temperature_c=health.temperature_c,
        power_on_hours=health.power_on_hours,
        wear_percent_used=0,
        wear_source="NVMe Percentage Used",
    )
    assert health.health == "PASSED" and health.temperature_c is not None


def test_smart_from_recorded_sata_output() -> None:
    health = health_from_device(Device("/dev/sda", smartctl=ReplaySmartctl("qemu-sata")))
    assert (health.model, health.serial, health.interface, health.health) == (
        "QEMU HARDDISK",
        "SATA0001",
        "sat",
        "PASSED",
    )
    assert health.power_on_hours == 1  # ATA attribute 9
    assert health.wear_percent_used is None  # QEMU's disk does not say it is an SSD


def test_cli_on_this_host_reports_virtio_honestly(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["drive", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["drives"]
    virtio = [d for d in listed if d["bus"] == "virtio"]
    assert virtio, "this machine's disk is virtio"
    for drive in virtio:
        assert drive["sed"]["kind"] == "unknown"
        assert drive["sed"]["reason"] == "virtio disk: no security commands"
        assert drive["smart"]["health"].startswith("unknown: no SMART")
    assert cli_main.main(["drive", "show", virtio[0]["path"]]) == 0
    shown = capsys.readouterr().out
    assert "virtio disk: no security commands" in shown and "health" in shown


def test_cli_show_of_a_non_drive_says_what_to_name(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["drive", "show", "/dev/nonexistent9"]) == 4
    err = capsys.readouterr().err
    assert "imgvaultctl: error: /dev/nonexistent9 is not a drive" in err
    assert "hint: name a whole drive" in err


def test_without_root_drives_are_unknown_not_errors(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(drives_module.os, "geteuid", lambda: 1000)
    for drive in drives_module.list_drives():
        assert drive.sed.reason == "run as root to query the drive"
        assert drive.smart.health == "unknown: run as root to query the drive"


def test_status_lists_drives_next_to_devices(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli_main.main(["status", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert "devices" in document and "drives" in document
    assert cli_main.main(["status"]) == 0
    out = capsys.readouterr().out
    assert "ENCRYPTION" in out and "DRIVE" in out and "HEALTH" in out


def test_missing_smartctl_degrades_to_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(path: str, timeout: float) -> SmartHealth:
        raise ToolMissingError("smartctl is not installed", "apt-get install smartmontools")

    monkeypatch.setattr(drives_module, "read_smart", missing)
    reports = drives_module.list_drives()
    assert reports
    for drive in reports:
        assert drive.smart.health == (
            "unknown: smartctl is not installed; apt-get install smartmontools"
        )


def test_tcg_answer_without_a_known_ssc_is_unknown_with_the_reason() -> None:
    tper_only = parse_discovery(
        (64 - 4).to_bytes(4, "big") + bytes(44) + bytes.fromhex("0001 10 0c 01") + bytes(11)
    )
    probe = SecurityProbe("kernel sed-opal", None, tper_only, ("supported",), (), None)
    sed = sed_status(probe)
    assert sed.kind == "unknown"
    assert sed.summary() == "unknown: TCG responds, but no Security Subsystem Class is listed"
    assert sed.locking_enabled is None and sed.mbr_shadow == "-"
    assert sed.to_json()["probe"]["kernel_flags"] == ["supported"]
