"""Command blocks, ioctl numbers and structure layouts of the security transports, checked against
the kernel headers and the SCSI/ATA/NVMe specifications. The ioctls themselves run on emulated
drives in the qemu tier (tests/test_qemu_drives.py)."""

import ctypes
from pathlib import Path

import pytest

from imgvault.devices.security_transport import (
    IOC_OPAL_DISCOVERY,
    IOC_OPAL_GET_STATUS,
    NVME_IOCTL_ADMIN_CMD,
    SG_IO,
    NvmePassthruCmd,
    Receiver,
    SecurityCommandError,
    SgIoHdr,
    ata_pass_through_12_cdb,
    ata_trusted_receive_cdb,
    decode_sense,
    describe_sense,
    nvme_controller_node,
    nvme_security_receive_cmd,
    nvme_status_unsupported,
    passthrough_probe,
    security_protocol_in_cdb,
)
from test_tcg_discovery import load_hex


def test_ioctl_numbers_match_the_kernel_headers() -> None:
    # _IOR('p', 236, struct opal_status) and _IOW('p', 239, struct opal_discovery) from
    # include/uapi/linux/sed-opal.h; _IOWR('N', 0x41, struct nvme_admin_cmd) from nvme_ioctl.h.
    assert IOC_OPAL_GET_STATUS == 0x800870EC
    assert IOC_OPAL_DISCOVERY == 0x401070EF
    assert NVME_IOCTL_ADMIN_CMD == 0xC0484E41
    assert SG_IO == 0x2285


def test_structure_layouts() -> None:
    assert ctypes.sizeof(NvmePassthruCmd) == 72
    assert NvmePassthruCmd.addr.offset == 24
    assert NvmePassthruCmd.cdw10.offset == 40
    assert NvmePassthruCmd.timeout_ms.offset == 64
    assert ctypes.sizeof(SgIoHdr) == 88
    assert SgIoHdr.dxferp.offset == 16
    assert SgIoHdr.usr_ptr.offset == 56
    assert SgIoHdr.status.offset == 64
    assert SgIoHdr.resid.offset == 72


def test_security_protocol_in_cdb() -> None:
    # SPC-4 6.30: opcode A2, protocol, SPSP (2), INC_512 byte, reserved, length (4), res, control
    cdb = security_protocol_in_cdb(0x01, 0x0001, 2048)
    assert cdb == bytes.fromhex("a2 01 0001 00 00 00000800 00 00")


def test_ata_trusted_receive_cdb_matches_sedutil_layout() -> None:
    # SAT-3 ATA PASS-THROUGH(12): PIO Data-In (4 << 1), T_DIR|BYTE_BLOCK|T_LENGTH=2 (0x0e),
    # FEATURES = protocol 0x01, COUNT = 4 blocks, LBA mid/high = ComID 0x0001, command 0x5c
    assert ata_trusted_receive_cdb(0x01, 0x0001, 2048) == bytes.fromhex(
        "a1 08 0e 01 04 00 01 00 00 5c 00 00"
    )
    # The transfer length's high byte goes in LBA 7:0 (ACS-3 7.56 Table 69).
    assert ata_trusted_receive_cdb(0x00, 0x0000, 512 * 0x1FF)[4:6] == bytes([0xFF, 0x01])
    assert ata_pass_through_12_cdb(0xEC, 0, 1, 0)[9] == 0xEC


def test_nvme_security_receive_dwords() -> None:
    # NVMe Base 1.4, 5.25: CDW10 = SECP (31:24) | SPSP (23:08) | NSSF; CDW11 = allocation length
    cmd = nvme_security_receive_cmd(0x01, 0x0001, 2048)
    assert (cmd.opcode, cmd.cdw10, cmd.cdw11) == (0x82, 0x01000100, 2048)
    assert nvme_security_receive_cmd(0x00, 0, 512).cdw10 == 0


def test_nvme_status_codes() -> None:
    assert nvme_status_unsupported(0x4001)  # DNR | invalid command opcode (QEMU's answer)
    assert nvme_status_unsupported(0x0002)  # invalid field
    assert not nvme_status_unsupported(0x0006)  # internal error
    assert not nvme_status_unsupported(0x0101)  # command specific, not generic


def test_sense_data_fixed_and_descriptor() -> None:
    fixed = bytes([0x70, 0, 0x05, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0x20, 0x00])
    assert decode_sense(fixed) == (5, 0x20, 0)
    descriptor = bytes([0x72, 0x05, 0x24, 0x00, 0, 0, 0, 0])
    assert decode_sense(descriptor) == (5, 0x24, 0)
    assert decode_sense(b"") == (0, 0, 0)
    assert decode_sense(bytes([0x70, 0, 5])) == (0, 0, 0)  # too short to hold ASC
    assert describe_sense(5, 0x20, 0) == "ILLEGAL REQUEST, invalid command operation code"
    assert describe_sense(0xE, 0x99, 1) == "sense key 0xe, ASC 0x99 ASCQ 0x01"


def test_nvme_controller_node_from_sysfs(tmp_path: Path) -> None:
    (tmp_path / "ctrl" / "nvme0").mkdir(parents=True)
    (tmp_path / "nvme0n1").mkdir()
    (tmp_path / "nvme0n1" / "device").symlink_to(tmp_path / "ctrl" / "nvme0")
    assert nvme_controller_node("nvme0n1", tmp_path) in (None, "/dev/nvme0")
    assert nvme_controller_node("nvme9n1", tmp_path) is None


@pytest.mark.parametrize("length", [512, 2048])
def test_protocol_list_request_fits_in_whole_blocks(length: int) -> None:
    assert ata_trusted_receive_cdb(0, 0, length)[4] == length // 512


def _receiver(answers: dict[int, bytes | SecurityCommandError]) -> Receiver:
    """A stand-in for one pass-through: protocol -> data or error."""

    def receive(fd: int, protocol: int, spsp: int, length: int) -> bytes:
        answer = answers[protocol]
        if isinstance(answer, SecurityCommandError):
            raise answer
        return answer + bytes(length - len(answer))

    return receive


UNSUPPORTED = SecurityCommandError("X", "ILLEGAL REQUEST", unsupported=True)


@pytest.fixture
def device(tmp_path: Path) -> str:
    path = tmp_path / "dev"
    path.write_bytes(b"")
    return str(path)


def test_probe_lists_protocols_first_then_reads_level0(device: str) -> None:
    receive = _receiver({0: load_hex("protocols-tcg.hex"), 1: load_hex("opal1.hex")})
    probe = passthrough_probe(device, [receive], "T", None, [])
    assert probe.protocols == (0, 1, 2)
    assert probe.discovery is not None and probe.discovery.ssc is not None
    assert probe.discovery.ssc.ssc_name == "Opal 1"
    assert probe.notes == ("T: supported security protocols 0x00, 0x01, 0x02",)


def test_probe_without_tcg_in_the_list_never_asks_for_level0(device: str) -> None:
    receive = _receiver({0: load_hex("protocols-none.hex")})  # protocol 1 would KeyError
    probe = passthrough_probe(device, [receive], "T", None, [])
    assert probe.discovery is None
    assert probe.problem == "no TCG security protocol (the drive lists 0x00)"


def test_probe_falls_through_unsupported_paths(device: str) -> None:
    refused = _receiver({0: UNSUPPORTED})
    probe = passthrough_probe(device, [refused, refused], "T", None, [])
    assert probe.protocols == ()
    assert probe.problem == "no TCG security protocol (security commands not implemented)"
    assert probe.notes == ("X failed: ILLEGAL REQUEST", "X failed: ILLEGAL REQUEST")
    answering = _receiver({0: load_hex("protocols-none.hex")})
    assert passthrough_probe(device, [refused, answering], "T", None, []).protocols == (0,)


def test_probe_reports_a_real_failure_as_unknown_not_as_no_tcg(device: str) -> None:
    broken = _receiver({0: SecurityCommandError("X", "MEDIUM ERROR", unsupported=False)})
    probe = passthrough_probe(device, [broken], "T", None, [])
    assert probe.protocols is None
    assert probe.problem == "X failed: MEDIUM ERROR"
