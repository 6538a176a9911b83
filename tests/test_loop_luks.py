"""LUKS header operations with real cryptsetup on loop devices (tier: loop, needs root)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from imgvault.devices.inventory import list_block_devices
from imgvault.devices.loop import LoopDevice
from imgvault.secret import Secret
from imgvault.system.run import run
from imgvault.volumes import cryptsetup
from imgvault.volumes.errors import (
    DeviceMissingError,
    NoDeviceMapperError,
    NotLuksError,
    WrongKeyError,
)

pytestmark = pytest.mark.loop
PASS = Secret("pacs-volume-passphrase")


def imgvaultctl(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "imgvault.cli.main", *args],
        capture_output=True,
        text=True,
        check=False,
    )


@pytest.mark.parametrize(("key_bits", "name"), [(256, "AES-128-XTS"), (512, "AES-256-XTS")])
def test_status_json_reports_cipher_and_key_size(
    make_loop, fast_pbkdf, key_bits: int, name: str
) -> None:
    loop: LoopDevice = make_loop(32)
    cryptsetup.luks_format(loop.path, PASS, key_bits=key_bits, pbkdf=fast_pbkdf, label="pacs")
    result = imgvaultctl("status", "--json")
    assert result.returncode == 0, result.stderr
    devices = {d["path"]: d for d in json.loads(result.stdout)["devices"]}
    entry = devices[str(loop.path)]
    assert entry["encrypted"] is True
    assert entry["backing_file"] == str(loop.backing_file)
    encryption = entry["encryption"]
    assert encryption["format"] == "LUKS2"
    assert encryption["cipher"] == "aes-xts-plain64"
    assert encryption["key_bits"] == key_bits
    assert encryption["cipher_description"] == f"aes-xts-plain64, {key_bits}-bit key = {name}"
    assert encryption["label"] == "pacs"
    assert encryption["state"] == "closed"
    assert encryption["mapping"] is None
    human = imgvaultctl("status")
    assert f"LUKS2 aes-xts-plain64, {key_bits}-bit key = {name}; closed" in human.stdout


def test_format_defaults_to_aes_128_xts_sha256(make_loop, fast_pbkdf) -> None:
    loop = make_loop(32)
    header = cryptsetup.luks_format(loop.path, PASS, pbkdf=fast_pbkdf)
    assert (header.version, header.cipher, header.key_bits) == (2, "aes-xts-plain64", 256)
    assert header.hash == "sha256"
    assert [slot.id for slot in header.keyslots] == [0]


def test_plain_and_luks1_devices_are_reported(make_loop) -> None:
    plain = make_loop(8)
    luks1 = make_loop(32)
    run(
        ["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks1", "--iter-time", "10",
         "--key-file=-", str(luks1.path)],
        stdin_secret=Secret("pw"), check=True,
    )  # fmt: skip
    by_path = {d.path: d for d in list_block_devices()}
    assert by_path[str(plain.path)].encryption_summary() == "not encrypted"
    luks1_entry = by_path[str(luks1.path)]
    assert luks1_entry.encryption is not None
    assert luks1_entry.encryption.version == 1
    assert luks1_entry.encryption_summary().startswith("LUKS1 aes-xts-plain64, 512-bit key")


def test_keys_test_and_add(make_loop, fast_pbkdf) -> None:
    loop = make_loop(32)
    cryptsetup.luks_format(loop.path, PASS, pbkdf=fast_pbkdf)
    assert cryptsetup.test_key(loop.path, PASS) == 0
    second = Secret("second passphrase\nwith a newline")
    assert cryptsetup.add_key(loop.path, PASS, second, pbkdf=fast_pbkdf) == 1
    assert cryptsetup.test_key(loop.path, second) == 1
    header = cryptsetup.read_header(loop.path)
    assert [slot.id for slot in header.keyslots] == [0, 1]


def test_wrong_key_is_a_clear_error_and_changes_nothing(make_loop, fast_pbkdf) -> None:
    loop = make_loop(32)
    cryptsetup.luks_format(loop.path, PASS, pbkdf=fast_pbkdf)
    before = loop.backing_file.read_bytes()[: 16 * 1024 * 1024]
    with pytest.raises(WrongKeyError) as caught:
        cryptsetup.test_key(loop.path, Secret("wrong"))
    assert "recovery key" in str(caught.value)
    assert "wrong" not in str(caught.value)
    with pytest.raises(WrongKeyError):
        cryptsetup.add_key(loop.path, Secret("wrong"), Secret("new"), pbkdf=fast_pbkdf)
    assert loop.backing_file.read_bytes()[: 16 * 1024 * 1024] == before


def test_not_luks_and_missing_device(make_loop, tmp_path: Path) -> None:
    plain = make_loop(8)
    with pytest.raises(NotLuksError, match="is not a LUKS volume"):
        cryptsetup.read_header(plain.path)
    assert cryptsetup.is_luks(plain.path) is False
    with pytest.raises(NotLuksError):
        cryptsetup.test_key(plain.path, PASS)
    with pytest.raises(DeviceMissingError):
        cryptsetup.test_key(tmp_path / "no-such-device", PASS)


def test_open_without_device_mapper_says_how_to_get_it(make_loop, fast_pbkdf) -> None:
    """These machines have no device-mapper: open must say so, not fail obscurely. (On a host
    that has it, the same call must simply work.)"""
    loop = make_loop(32)
    cryptsetup.luks_format(loop.path, PASS, pbkdf=fast_pbkdf)
    # Not /dev/mapper/control: libdevmapper creates that node even where the kernel lacks dm.
    if Path("/sys/class/misc/device-mapper").exists():
        cryptsetup.open_volume(loop.path, "dmcheck", PASS)
        cryptsetup.close_volume("dmcheck")
        return
    with pytest.raises(NoDeviceMapperError) as caught:
        cryptsetup.open_volume(loop.path, "dmcheck", PASS)
    assert "modprobe dm_crypt" in caught.value.hint
    assert caught.value.exit_code == 69
