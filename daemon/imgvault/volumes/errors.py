"""Typed cryptsetup failures, each with a message that says what to do.

cryptsetup's exit codes (cryptsetup(8), RETURN CODES): 1 wrong parameters, 2 no permission
(bad passphrase), 3 out of memory, 4 wrong device specified, 5 device already exists or is busy.
"""

from imgvault.errors import ImgvaultError
from imgvault.system.run import CommandResult


class CryptsetupError(ImgvaultError):
    """A cryptsetup operation failed for a reason without a more precise type."""


class WrongKeyError(CryptsetupError):
    exit_code = 2


class DeviceBusyError(CryptsetupError):
    exit_code = 5


class NotLuksError(CryptsetupError):
    pass


class DeviceMissingError(CryptsetupError):
    exit_code = 4


class NoDeviceMapperError(CryptsetupError):
    exit_code = 69


class OutOfMemoryError(CryptsetupError):
    exit_code = 3


def not_luks(device: str) -> NotLuksError:
    return NotLuksError(
        f"{device} is not a LUKS volume",
        "check the device path ('imgvaultctl status' lists LUKS volumes); a new device is "
        "encrypted with 'imgvaultctl volume format'",
    )


def no_device_mapper(what: str) -> NoDeviceMapperError:
    return NoDeviceMapperError(
        f"{what}: the kernel has no device-mapper",
        "load it with 'modprobe dm_crypt'; on machines without it (the development VMs) "
        "header operations still work and open/close run in scripts/vm-test",
    )


def error_for(result: CommandResult, device: str) -> CryptsetupError:
    """Map a failed cryptsetup run on `device` to the most precise error type."""
    stderr = result.stderr.strip()
    action = next((arg for arg in result.argv[1:] if not arg.startswith("-")), "")
    if "Cannot initialize device-mapper" in stderr or "dm_mod" in stderr:
        return no_device_mapper(f"cryptsetup {action} {device}")
    if result.returncode == 2 or "No key available" in stderr:
        return WrongKeyError(
            f"no keyslot of {device} opens with this passphrase or key file",
            "check the passphrase (and keyboard layout) or key file; if it is lost, use the "
            "recovery key; 'imgvaultctl volume key list' shows the keyslots",
        )
    if "is not a valid LUKS device" in stderr or "not supported for this device type" in stderr:
        return not_luks(device)
    if result.returncode == 4 or "does not exist or access denied" in stderr:
        return DeviceMissingError(
            f"{device} does not exist or cannot be opened",
            "check the path ('imgvaultctl status' lists block devices) and run as root",
        )
    if result.returncode == 5 or "already exists" in stderr or "busy" in stderr.lower():
        return DeviceBusyError(
            f"{device} is busy or its mapping already exists: {stderr}",
            "unmount it and close its mapping first; 'fuser -vm MOUNTPOINT' names the "
            "processes using it",
        )
    if result.returncode == 3 or "Not enough available memory" in stderr:
        return OutOfMemoryError(
            f"cryptsetup {action} {device} ran out of memory: {stderr}",
            "lower the PBKDF memory cost (policy pbkdf_memory_kib) or free memory",
        )
    return CryptsetupError(
        f"cryptsetup {action} {device} failed (exit {result.returncode}): {stderr}",
        "run the same operation with 'cryptsetup --debug' for details",
    )
