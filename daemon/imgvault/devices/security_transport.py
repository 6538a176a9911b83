"""Asking a drive for its TCG Level 0 Discovery, natively (no sedutil).

Order, per drive:
1. The kernel's sed-opal ioctls on the block device (include/uapi/linux/sed-opal.h):
   IOC_OPAL_GET_STATUS (Linux 6.0+, the kernel's own summary flags) and IOC_OPAL_DISCOVERY
   (Linux 6.6+, the raw response). Debian 12's 6.1 kernel has only the first; an older kernel or
   a driver without an OPAL device answers with an errno, and we fall back to:
2. IF-RECV through a pass-through chosen by device type, first Security Protocol 0x00 (the list
   of supported protocols), then, only if 0x01 (TCG) is listed, protocol 0x01 / ComID 0x0001
   (Level 0 Discovery, TCG Core Spec 2.01 3.3.6):
   - NVMe: admin Security Receive (opcode 0x82) through NVME_IOCTL_ADMIN_CMD on the controller
     character device (NVMe Base 1.4, 5.25: CDW10 = SECP << 24 | SPSP << 8, CDW11 = length).
   - SCSI and SATA behind libata: SG_IO with SECURITY PROTOCOL IN (SPC-4 6.30, opcode 0xA2);
     libata translates it to ATA TRUSTED RECEIVE when the drive reports the Trusted Computing
     feature set (IDENTIFY word 48). If it is refused on an ATA drive we try ATA PASS-THROUGH(12)
     (SAT-3 12.2.2) with TRUSTED RECEIVE (ACS-3 7.56, 0x5C) directly, which libata allows only
     with `libata.allow_tpm=1`.

Everything here is hand-written on fcntl.ioctl + ctypes: no Python library wraps these ioctls.
"""

import ctypes
import errno
import fcntl
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from imgvault.devices.tcg_discovery import Discovery, parse_discovery, parse_protocol_list
from imgvault.errors import ImgvaultError

TCG_PROTOCOL = 0x01
LEVEL0_COMID = 0x0001
PROTOCOL_LIST = 0x00
BUFFER_LENGTH = 2048  # a Level 0 response fits in 2048 bytes (Opal SSC 2.01 4.1.1.1 minimum)
TIMEOUT_MS = 10_000


def _ioc(direction: int, kind: str, number: int, size: int) -> int:
    """The kernel's _IOC() (include/uapi/asm-generic/ioctl.h)."""
    return direction << 30 | size << 16 | ord(kind) << 8 | number


_IOC_WRITE, _IOC_READ = 1, 2
# struct opal_status { __u32 flags; __u32 reserved; }
IOC_OPAL_GET_STATUS = _ioc(_IOC_READ, "p", 236, 8)
# struct opal_discovery { __u64 data; __u64 size; }
IOC_OPAL_DISCOVERY = _ioc(_IOC_WRITE, "p", 239, 16)
SG_IO = 0x2285  # include/scsi/sg.h

# OPAL_FL_* in sed-opal.h, as reported by IOC_OPAL_GET_STATUS
OPAL_FLAGS = {
    0x01: "supported",
    0x02: "locking_supported",
    0x04: "locking_enabled",
    0x08: "locked",
    0x10: "mbr_enabled",
    0x20: "mbr_done",
}


class NvmePassthruCmd(ctypes.Structure):
    """struct nvme_passthru_cmd (include/uapi/linux/nvme_ioctl.h), 72 bytes."""

    _fields_ = (
        ("opcode", ctypes.c_uint8),
        ("flags", ctypes.c_uint8),
        ("rsvd1", ctypes.c_uint16),
        ("nsid", ctypes.c_uint32),
        ("cdw2", ctypes.c_uint32),
        ("cdw3", ctypes.c_uint32),
        ("metadata", ctypes.c_uint64),
        ("addr", ctypes.c_uint64),
        ("metadata_len", ctypes.c_uint32),
        ("data_len", ctypes.c_uint32),
        ("cdw10", ctypes.c_uint32),
        ("cdw11", ctypes.c_uint32),
        ("cdw12", ctypes.c_uint32),
        ("cdw13", ctypes.c_uint32),
        ("cdw14", ctypes.c_uint32),
        ("cdw15", ctypes.c_uint32),
        ("timeout_ms", ctypes.c_uint32),
        ("result", ctypes.c_uint32),
    )


NVME_IOCTL_ADMIN_CMD = _ioc(_IOC_READ | _IOC_WRITE, "N", 0x41, ctypes.sizeof(NvmePassthruCmd))
NVME_ADMIN_SECURITY_RECEIVE = 0x82


class SgIoHdr(ctypes.Structure):
    """sg_io_hdr_t (include/scsi/sg.h, interface 'S')."""

    _fields_ = (
        ("interface_id", ctypes.c_int),
        ("dxfer_direction", ctypes.c_int),
        ("cmd_len", ctypes.c_ubyte),
        ("mx_sb_len", ctypes.c_ubyte),
        ("iovec_count", ctypes.c_ushort),
        ("dxfer_len", ctypes.c_uint),
        ("dxferp", ctypes.c_void_p),
        ("cmdp", ctypes.c_void_p),
        ("sbp", ctypes.c_void_p),
        ("timeout", ctypes.c_uint),
        ("flags", ctypes.c_uint),
        ("pack_id", ctypes.c_int),
        ("usr_ptr", ctypes.c_void_p),
        ("status", ctypes.c_ubyte),
        ("masked_status", ctypes.c_ubyte),
        ("msg_status", ctypes.c_ubyte),
        ("sb_len_wr", ctypes.c_ubyte),
        ("host_status", ctypes.c_ushort),
        ("driver_status", ctypes.c_ushort),
        ("resid", ctypes.c_int),
        ("duration", ctypes.c_uint),
        ("info", ctypes.c_uint),
    )


SG_DXFER_FROM_DEV = -3
SENSE_KEYS = {
    0x2: "NOT READY",
    0x3: "MEDIUM ERROR",
    0x4: "HARDWARE ERROR",
    0x5: "ILLEGAL REQUEST",
    0x6: "UNIT ATTENTION",
    0xB: "ABORTED COMMAND",
}
ADDITIONAL_SENSE = {
    0x20: "invalid command operation code",
    0x24: "invalid field in CDB",
    0x26: "invalid field in parameter list",
}


class SecurityCommandError(ImgvaultError):
    """A security command failed. `unsupported` means the device (or the path to it) does not
    implement the command at all, which is an answer ("no TCG"), not a fault."""

    def __init__(self, command: str, detail: str, *, unsupported: bool) -> None:
        super().__init__(
            f"{command} failed: {detail}",
            "run as root on the drive itself (not a partition), connected by SATA, SAS or NVMe",
        )
        self.command = command
        self.detail = detail
        self.unsupported = unsupported


# ---------------------------------------------------------------- command blocks (pure)


def security_protocol_in_cdb(protocol: int, spsp: int, length: int) -> bytes:
    """SECURITY PROTOCOL IN (SPC-4 6.30, Table 266): 12 bytes, INC_512 = 0 (length in bytes)."""
    return struct.pack(">BBHBBIBB", 0xA2, protocol, spsp, 0, 0, length, 0, 0)


def ata_pass_through_12_cdb(command: int, features: int, count: int, lba: int) -> bytes:
    """ATA PASS-THROUGH(12) (SAT-3 12.2.2) for a PIO Data-In command.

    Byte 1: PROTOCOL 4 (PIO Data-In) << 1. Byte 2: T_DIR 1 (from device), BYTE_BLOCK 1,
    T_LENGTH 2 (transfer length in the COUNT field, in 512-byte blocks) = 0x0E. Then FEATURES,
    COUNT, LBA (7:0, 15:8, 23:16), DEVICE, COMMAND, reserved, CONTROL.
    """
    lba_bytes = (lba & 0xFF, lba >> 8 & 0xFF, lba >> 16 & 0xFF)
    return bytes((0xA1, 4 << 1, 0x0E, features, count, *lba_bytes, 0, command, 0, 0))


def ata_trusted_receive_cdb(protocol: int, spsp: int, length: int) -> bytes:
    """TRUSTED RECEIVE (ACS-3 7.56, 0x5C): FEATURES = security protocol, COUNT = transfer
    length (7:0) in blocks, LBA 7:0 = transfer length (15:8), LBA 23:8 = SP specific."""
    blocks = length // 512
    return ata_pass_through_12_cdb(0x5C, protocol, blocks & 0xFF, spsp << 8 | blocks >> 8)


def nvme_security_receive_cmd(protocol: int, spsp: int, length: int) -> NvmePassthruCmd:
    """Admin Security Receive (NVMe Base 1.4, 5.25, Figures 270-271)."""
    cmd = NvmePassthruCmd()
    cmd.opcode = NVME_ADMIN_SECURITY_RECEIVE
    cmd.cdw10 = protocol << 24 | spsp << 8
    cmd.cdw11 = length
    return cmd


def decode_sense(sense: bytes) -> tuple[int, int, int]:
    """(sense key, ASC, ASCQ) from fixed (0x70/0x71) or descriptor (0x72/0x73) sense data
    (SPC-4 4.5)."""
    if len(sense) < 2:
        return (0, 0, 0)
    code = sense[0] & 0x7F
    if code in (0x72, 0x73) and len(sense) >= 4:
        return (sense[1] & 0x0F, sense[2], sense[3])
    if code in (0x70, 0x71) and len(sense) >= 14:
        return (sense[2] & 0x0F, sense[12], sense[13])
    return (0, 0, 0)


def describe_sense(key: int, asc: int, ascq: int) -> str:
    name = SENSE_KEYS.get(key, f"sense key 0x{key:x}")
    what = ADDITIONAL_SENSE.get(asc, f"ASC 0x{asc:02x} ASCQ 0x{ascq:02x}")
    return f"{name}, {what}"


def nvme_status_unsupported(status: int) -> bool:
    """Generic status Invalid Command Opcode (0x01) or Invalid Field (0x02), DNR/More masked."""
    return (status >> 8 & 0x7) == 0 and (status & 0xFF) in (0x01, 0x02)


# ---------------------------------------------------------------- ioctls


def _errno_name(error: OSError) -> str:
    code = error.errno or 0
    # 524 is the kernel-internal ENOTSUPP that sed_ioctl returns when the drive has no OPAL.
    return "ENOTSUPP" if code == 524 else errno.errorcode.get(code, str(code))


def sg_io_read(fd: int, cdb: bytes, length: int, command: str) -> bytes:
    """Run a data-in SCSI command through SG_IO; SecurityCommandError with the sense."""
    data = ctypes.create_string_buffer(length)
    cdb_buf = ctypes.create_string_buffer(cdb, len(cdb))
    sense = ctypes.create_string_buffer(32)
    hdr = SgIoHdr()
    hdr.interface_id = ord("S")
    hdr.dxfer_direction = SG_DXFER_FROM_DEV
    hdr.cmd_len = len(cdb)
    hdr.mx_sb_len = len(sense)
    hdr.dxfer_len = length
    hdr.dxferp = ctypes.addressof(data)
    hdr.cmdp = ctypes.addressof(cdb_buf)
    hdr.sbp = ctypes.addressof(sense)
    hdr.timeout = TIMEOUT_MS
    try:
        fcntl.ioctl(fd, SG_IO, hdr)
    except OSError as error:
        raise SecurityCommandError(
            command, f"SG_IO: {_errno_name(error)}", unsupported=error.errno == errno.ENOTTY
        ) from None
    if hdr.status or hdr.host_status or hdr.driver_status & 0x0F:
        key, asc, ascq = decode_sense(sense.raw[: hdr.sb_len_wr])
        if key:
            raise SecurityCommandError(
                command, describe_sense(key, asc, ascq), unsupported=key == 0x5
            )
        raise SecurityCommandError(
            command,
            f"SCSI status 0x{hdr.status:02x}, host 0x{hdr.host_status:x}, "
            f"driver 0x{hdr.driver_status:x}",
            unsupported=False,
        )
    return data.raw[: length - max(hdr.resid, 0)]


def scsi_security_protocol_in(fd: int, protocol: int, spsp: int, length: int) -> bytes:
    cdb = security_protocol_in_cdb(protocol, spsp, length)
    return sg_io_read(fd, cdb, length, "SCSI SECURITY PROTOCOL IN")


def ata_trusted_receive(fd: int, protocol: int, spsp: int, length: int) -> bytes:
    cdb = ata_trusted_receive_cdb(protocol, spsp, length)
    try:
        return sg_io_read(fd, cdb, length, "ATA TRUSTED RECEIVE (ATA PASS-THROUGH)")
    except SecurityCommandError as error:
        if not error.unsupported:
            raise
        raise SecurityCommandError(
            error.command,
            f"{error.detail} (libata passes TRUSTED commands only with libata.allow_tpm=1)",
            unsupported=True,
        ) from None


def nvme_admin(fd: int, cmd: NvmePassthruCmd, length: int, command: str) -> bytes:
    """Run a data-in NVMe admin command through NVME_IOCTL_ADMIN_CMD."""
    data = ctypes.create_string_buffer(length)
    cmd.addr = ctypes.addressof(data)
    cmd.data_len = length
    cmd.timeout_ms = TIMEOUT_MS
    try:
        status = fcntl.ioctl(fd, NVME_IOCTL_ADMIN_CMD, cmd)
    except OSError as error:
        raise SecurityCommandError(
            command,
            f"NVME_IOCTL_ADMIN_CMD: {_errno_name(error)}",
            unsupported=error.errno == errno.ENOTTY,
        ) from None
    if status:
        unsupported = nvme_status_unsupported(status)
        raise SecurityCommandError(
            command,
            f"NVMe status 0x{status:04x}" + (" (invalid opcode or field)" if unsupported else ""),
            unsupported=unsupported,
        )
    return data.raw


def nvme_security_receive(fd: int, protocol: int, spsp: int, length: int) -> bytes:
    cmd = nvme_security_receive_cmd(protocol, spsp, length)
    return nvme_admin(fd, cmd, length, "NVMe Security Receive")


def kernel_opal_status(fd: int) -> int:
    """OPAL_FL_* flags from IOC_OPAL_GET_STATUS; OSError if the kernel or driver lacks it."""
    buf = bytearray(8)
    fcntl.ioctl(fd, IOC_OPAL_GET_STATUS, buf)
    return int.from_bytes(buf[:4], "little")


def kernel_opal_discovery(fd: int) -> bytes:
    """The raw Level 0 response from IOC_OPAL_DISCOVERY; OSError on kernels before 6.6."""
    data = ctypes.create_string_buffer(BUFFER_LENGTH)
    request = struct.pack("=QQ", ctypes.addressof(data), BUFFER_LENGTH)
    buf = bytearray(request)
    returned = fcntl.ioctl(fd, IOC_OPAL_DISCOVERY, buf)
    return data.raw[: min(returned, BUFFER_LENGTH)] if returned > 0 else data.raw


# ---------------------------------------------------------------- probe

# (fd, security protocol, protocol specific, allocation length) -> data
Receiver = Callable[[int, int, int, int], bytes]


@dataclass(frozen=True)
class SecurityProbe:
    """What a drive said about TCG security, and by which path we asked."""

    transport: str  # e.g. "kernel sed-opal", "NVMe Security Receive"
    protocols: tuple[int, ...] | None  # supported security protocols; () = none at all
    discovery: Discovery | None
    kernel_flags: tuple[str, ...] | None  # IOC_OPAL_GET_STATUS, when the kernel answered
    notes: tuple[str, ...]  # how each path answered, for `drive show`
    problem: str | None  # why there is no discovery

    def to_json(self) -> dict[str, Any]:
        return {
            "transport": self.transport,
            "protocols": None if self.protocols is None else list(self.protocols),
            "kernel_flags": None if self.kernel_flags is None else list(self.kernel_flags),
            "notes": list(self.notes),
            "problem": self.problem,
            "discovery": None if self.discovery is None else self.discovery.to_json(),
        }


def nvme_controller_node(block_name: str, sys_block: Path = Path("/sys/block")) -> str | None:
    """/dev/nvmeN for namespace nvmeNnM: admin commands belong to the controller."""
    device = sys_block / block_name / "device"
    if device.is_symlink():
        node = Path("/dev") / device.resolve().name
        if node.exists():
            return str(node)
    return None


def probe_security(path: str, bus: str, *, ata: bool = False) -> SecurityProbe:
    """Ask the drive at `path` ("nvme" or "scsi" `bus`) for its TCG Level 0 Discovery.

    "Not supported" answers and failed protocol-list queries become part of the result. Raises
    OSError when the device cannot be opened (not root, gone), and DiscoveryError or
    SecurityCommandError when a drive that lists TCG then fails or garbles its Level 0 answer.
    """
    notes: list[str] = []
    flags: tuple[str, ...] | None = None
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        try:
            bits = kernel_opal_status(fd)
            flags = tuple(name for bit, name in OPAL_FLAGS.items() if bits & bit)
            notes.append(f"IOC_OPAL_GET_STATUS: flags 0x{bits:02x}")
        except OSError as error:
            notes.append(f"IOC_OPAL_GET_STATUS: {_errno_name(error)}")
        try:
            raw = kernel_opal_discovery(fd)
            notes.append("IOC_OPAL_DISCOVERY: ok")
            return SecurityProbe(
                "kernel sed-opal", None, parse_discovery(raw), flags, tuple(notes), None
            )
        except OSError as error:
            notes.append(f"IOC_OPAL_DISCOVERY: {_errno_name(error)}")
    finally:
        os.close(fd)
    if bus == "nvme":
        node = nvme_controller_node(Path(path).name) or path
        return passthrough_probe(
            node, [nvme_security_receive], "NVMe Security Receive", flags, notes
        )
    receivers: list[Receiver] = [scsi_security_protocol_in]
    if ata:
        receivers.append(ata_trusted_receive)
    return passthrough_probe(path, receivers, "SCSI SECURITY PROTOCOL IN", flags, notes)


def passthrough_probe(
    path: str,
    receivers: list[Receiver],
    transport: str,
    flags: tuple[str, ...] | None,
    notes: list[str],
) -> SecurityProbe:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        for receive in receivers:
            try:
                listing = receive(fd, PROTOCOL_LIST, 0, 512)
            except SecurityCommandError as error:
                notes.append(error.message)
                if not error.unsupported:
                    return SecurityProbe(transport, None, None, flags, tuple(notes), error.message)
                continue
            if receive is ata_trusted_receive:
                transport = "ATA TRUSTED RECEIVE"
            protocols = parse_protocol_list(listing)
            listed = ", ".join(f"0x{p:02x}" for p in protocols) or "none"
            notes.append(f"{transport}: supported security protocols {listed}")
            if TCG_PROTOCOL not in protocols:
                return SecurityProbe(
                    transport,
                    protocols,
                    None,
                    flags,
                    tuple(notes),
                    f"no TCG security protocol (the drive lists {listed})",
                )
            raw = receive(fd, TCG_PROTOCOL, LEVEL0_COMID, BUFFER_LENGTH)
            return SecurityProbe(
                transport, protocols, parse_discovery(raw), flags, tuple(notes), None
            )
        return SecurityProbe(
            transport,
            (),
            None,
            flags,
            tuple(notes),
            "no TCG security protocol (security commands not implemented)",
        )
    finally:
        os.close(fd)
