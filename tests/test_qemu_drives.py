"""The real drive paths inside the QEMU guest (scripts/qemu-test): an emulated NVMe controller
(serial NVME0001), an AHCI SATA disk (SATA0001), a virtio-scsi disk (SCSI0001) and a USB
mass-storage disk (USB0001). None implements TCG security, so the sed-opal ioctls, NVMe Security
Receive, SECURITY PROTOCOL IN and ATA TRUSTED RECEIVE must all run and honestly end in "no TCG
security protocol"; SMART must say PASSED where the device has SMART. The USB disk must get the
"behind a USB bridge" verdict, not "no SED".

Each test first proves its command path works with a command the emulated drive does implement
(Identify, INQUIRY, ATA IDENTIFY DEVICE), so that "not supported" cannot come from a wrong ioctl
number or structure layout."""

import contextlib
import io
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from imgvault.cli.main import main
from imgvault.devices.drives import DriveReport, list_drives
from imgvault.devices.security_transport import (
    NvmePassthruCmd,
    SecurityCommandError,
    ata_pass_through_12_cdb,
    kernel_opal_discovery,
    kernel_opal_status,
    nvme_admin,
    nvme_controller_node,
    nvme_security_receive,
    scsi_security_protocol_in,
    sg_io_read,
)

pytestmark = pytest.mark.qemu


@pytest.fixture(scope="module")
def drives() -> dict[str, DriveReport]:
    return {d.serial or d.name: d for d in list_drives()}


@contextlib.contextmanager
def opened(path: str) -> Iterator[int]:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    try:
        yield fd
    finally:
        os.close(fd)


def _by_serial(serial: str) -> str:
    for block in Path("/sys/block").iterdir():
        for attribute in ("device/serial", "device/vpd_pg80"):
            node = block / attribute
            if node.is_file() and serial.encode() in node.read_bytes():
                return f"/dev/{block.name}"
    raise AssertionError(f"no disk with serial {serial} in the guest")


def test_nvme_admin_path_works_identify_controller() -> None:
    namespace = _by_serial("NVME0001")
    controller = nvme_controller_node(Path(namespace).name)
    assert controller == "/dev/nvme0", "the guest kernel must give a controller char device"
    identify = NvmePassthruCmd()
    identify.opcode = 0x06  # Identify, CNS 1 = controller (NVMe Base 1.4, 5.15)
    identify.cdw10 = 1
    with opened(controller) as fd:
        data = nvme_admin(fd, identify, 4096, "Identify")
    assert data[4:24].decode().strip() == "NVME0001"  # SN, bytes 23:04


def test_nvme_security_receive_is_not_implemented() -> None:
    with opened("/dev/nvme0") as fd, pytest.raises(SecurityCommandError) as caught:
        nvme_security_receive(fd, 0x00, 0, 512)
    assert caught.value.unsupported
    assert "NVMe status 0x4001" in caught.value.detail  # DNR + Invalid Command Opcode


def test_kernel_sed_opal_ioctls_answer_with_an_errno() -> None:
    """Debian 12's 6.1 kernel: GET_STATUS exists but the drive has no OPAL (ENOTSUPP, 524);
    DISCOVERY (6.6+) is unknown (ENOTTY)."""
    for path in (_by_serial("NVME0001"), _by_serial("SATA0001")):
        with opened(path) as fd:
            with pytest.raises(OSError) as status:
                kernel_opal_status(fd)
            assert status.value.errno in (524, 95)
            with pytest.raises(OSError) as discovery:
                kernel_opal_discovery(fd)
            assert discovery.value.errno == 25  # ENOTTY


def test_sg_io_and_ata_pass_through_work_identify_device() -> None:
    sata = _by_serial("SATA0001")
    with opened(sata) as fd:
        inquiry = sg_io_read(fd, bytes([0x12, 0, 0, 0, 96, 0]), 96, "INQUIRY")
        assert inquiry[8:16].decode().strip() == "ATA"  # T10 vendor: libata is the SAT
        # ATA IDENTIFY DEVICE (0xEC) through the same ATA PASS-THROUGH(12) builder.
        ident = sg_io_read(fd, ata_pass_through_12_cdb(0xEC, 0, 1, 0), 512, "IDENTIFY")
    serial = bytes(b for i in range(20, 40, 2) for b in (ident[i + 1], ident[i]))
    assert serial.decode().strip() == "SATA0001"  # words 10-19, byte-swapped ATA string
    # libata announces Trusted Computing (and so translates SECURITY PROTOCOL IN) only for
    # ATA-8 and later drives with word 48 bit 0 (ata_id_has_trusted). QEMU's disk claims ATA-7
    # (word 80), where word 48 bit 0 is the old "doubleword I/O" flag QEMU sets.
    major_version = int.from_bytes(ident[160:162], "little").bit_length() - 1
    assert major_version == 7
    assert int.from_bytes(ident[96:98], "little") & 1 == 1


def test_scsi_security_protocol_in_is_refused_by_libata() -> None:
    with opened(_by_serial("SATA0001")) as fd, pytest.raises(SecurityCommandError) as caught:
        scsi_security_protocol_in(fd, 0x00, 0, 512)
    assert caught.value.unsupported
    assert caught.value.detail == "ILLEGAL REQUEST, invalid command operation code"


@pytest.mark.parametrize(
    ("serial", "bus", "interface"), [("NVME0001", "nvme", "nvme"), ("SATA0001", "ata", "sat")]
)
def test_drive_report_says_no_tcg_and_smart_passed(
    drives: dict[str, DriveReport], serial: str, bus: str, interface: str
) -> None:
    drive = drives[serial]
    assert drive.path == _by_serial(serial)
    assert drive.bus == bus
    assert drive.sed.kind == "none"
    assert drive.sed.reason is not None
    assert drive.sed.reason.startswith("no TCG security protocol")
    probe = drive.sed.probe
    assert probe is not None and probe.protocols is not None and 0x01 not in probe.protocols
    assert "IOC_OPAL_DISCOVERY: ENOTTY" in probe.notes
    assert drive.smart.health == "PASSED"
    assert drive.smart.interface == interface
    assert drive.smart.serial == serial
    assert drive.smart.power_on_hours is not None and drive.smart.temperature_c is not None
    assert drive.warnings == ["not a self-encrypting drive: protect data at rest with LUKS"]


def test_virtio_scsi_disk_is_asked_by_scsi_security_protocol_in(
    drives: dict[str, DriveReport],
) -> None:
    drive = drives["SCSI0001"]
    assert drive.bus == "scsi"
    assert drive.sed.kind == "none"
    assert drive.sed.reason == "no TCG security protocol (security commands not implemented)"
    assert drive.sed.probe is not None
    assert drive.sed.probe.notes[-1] == (
        "SCSI SECURITY PROTOCOL IN failed: ILLEGAL REQUEST, invalid command operation code"
    )
    assert drive.smart.health.startswith("unknown")  # QEMU's SCSI disk reports no SMART status


def test_usb_disk_is_reported_as_behind_a_bridge(drives: dict[str, DriveReport]) -> None:
    drive = drives["USB0001"]
    assert drive.bus == "usb"
    assert drive.sed.kind == "unknown"
    assert drive.sed.reason == "behind a USB bridge: security commands do not pass"
    assert drive.warnings[0].startswith("behind a USB bridge: security commands do not pass")
    assert drive.smart.health == (
        "unknown: no SMART: smartctl cannot identify the device type (virtio and most USB "
        "bridges have none)"
    )


def test_nvme_ssd_wear_from_smart(drives: dict[str, DriveReport]) -> None:
    smart = drives["NVME0001"].smart
    assert (smart.media, smart.wear_percent_used, smart.model) == ("SSD", 0, "QEMU NVMe Ctrl")


def _cli_json(*argv: str) -> dict[str, object]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(list(argv)) == 0
    document: dict[str, object] = json.loads(out.getvalue())
    return document


def test_cli_drive_list_show_and_status_json() -> None:
    listed = _cli_json("drive", "list", "--json")
    kinds = {d["serial"]: d["sed"]["kind"] for d in listed["drives"]}  # type: ignore[attr-defined]
    assert kinds == {
        "NVME0001": "none",
        "SATA0001": "none",
        "SCSI0001": "none",
        "USB0001": "unknown",
    }
    shown = _cli_json("drive", "show", _by_serial("SATA0001"), "--json")
    assert shown["smart"]["health"] == "PASSED"  # type: ignore[index]
    status = _cli_json("status", "--json")
    assert {d["serial"] for d in status["drives"]} == set(kinds)  # type: ignore[attr-defined]
    assert status["devices"]
