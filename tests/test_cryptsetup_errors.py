"""cryptsetup exit codes and messages map to typed errors that say what to do."""

import pytest

from imgvault.system.run import CommandResult
from imgvault.volumes.errors import (
    CryptsetupError,
    DeviceBusyError,
    DeviceMissingError,
    NoDeviceMapperError,
    NotLuksError,
    OutOfMemoryError,
    WrongKeyError,
    error_for,
)


@pytest.mark.parametrize(
    ("code", "stderr", "error_type", "hint_word"),
    [
        (2, "No key available with this passphrase.", WrongKeyError, "recovery key"),
        (1, "Device /x is not a valid LUKS device.", NotLuksError, "volume format"),
        (4, "Device /x does not exist or access denied.", DeviceMissingError, "root"),
        (5, "Device pacs already exists.", DeviceBusyError, "fuser"),
        (5, "Device pacs is still in use.", DeviceBusyError, "unmount"),
        (3, "Not enough available memory to open a keyslot.", OutOfMemoryError, "PBKDF"),
        (
            1,
            "Cannot initialize device-mapper. Is dm_mod kernel module loaded?",
            NoDeviceMapperError,
            "modprobe",
        ),
        (1, "Something else entirely.", CryptsetupError, "--debug"),
    ],
)
def test_error_mapping(code: int, stderr: str, error_type: type, hint_word: str) -> None:
    argv = ("cryptsetup", "--batch-mode", "--key-file=-", "open", "/x", "pacs")
    error = error_for(CommandResult(argv, code, "", stderr), "/x")
    assert type(error) is error_type
    assert hint_word in error.hint
    assert "/x" in str(error)
    assert "--batch-mode" not in str(error)
