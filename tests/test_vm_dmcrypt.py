"""Real dm-crypt: open, mkfs, mount, close (tier: vm, runs inside the UML guest)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from imgvault.devices.inventory import list_block_devices
from imgvault.secret import Secret
from imgvault.system.run import run
from imgvault.volumes import cryptsetup
from imgvault.volumes.errors import DeviceBusyError, WrongKeyError

pytestmark = pytest.mark.vm
PASS = Secret("smoke-test passphrase")
MARKER = b"IMGVAULT-SMOKE-MARKER-" + os.urandom(16).hex().encode()


def mount(device: Path, target: Path) -> None:
    target.mkdir(exist_ok=True)
    run(["mount", str(device), str(target)], check=True)


def umount(target: Path) -> None:
    run(["umount", str(target)], check=True)


def test_smoke_format_open_mkfs_mount_write_close_reopen(
    make_loop, fast_pbkdf, tmp_path: Path
) -> None:
    loop = make_loop(64)
    cryptsetup.luks_format(loop.path, PASS, pbkdf=fast_pbkdf)
    mapped = cryptsetup.open_volume(loop.path, "smoke", PASS)
    assert mapped == Path("/dev/mapper/smoke") and mapped.exists()
    run(["mkfs.ext4", "-q", str(mapped)], check=True)
    mnt = tmp_path / "mnt"
    mount(mapped, mnt)
    (mnt / "marker.bin").write_bytes(MARKER * 1000)
    umount(mnt)
    cryptsetup.close_volume("smoke")
    assert not mapped.exists()

    assert MARKER not in loop.backing_file.read_bytes()  # ciphertext only on the disk

    with pytest.raises(WrongKeyError):
        cryptsetup.open_volume(loop.path, "smoke", Secret("not the passphrase"))
    assert not mapped.exists()

    cryptsetup.open_volume(loop.path, "smoke", PASS)
    mount(mapped, mnt)
    try:
        assert (mnt / "marker.bin").read_bytes() == MARKER * 1000
    finally:
        umount(mnt)
        cryptsetup.close_volume("smoke")


def test_close_of_a_mounted_volume_is_refused_as_busy(
    make_loop, fast_pbkdf, tmp_path: Path
) -> None:
    loop = make_loop(32)
    cryptsetup.luks_format(loop.path, PASS, pbkdf=fast_pbkdf)
    mapped = cryptsetup.open_volume(loop.path, "busy", PASS)
    run(["mkfs.ext4", "-q", str(mapped)], check=True)
    mount(mapped, tmp_path / "mnt")
    try:
        with pytest.raises(DeviceBusyError, match=r"busy|in use"):
            cryptsetup.close_volume("busy")
        assert mapped.exists()
    finally:
        umount(tmp_path / "mnt")
        cryptsetup.close_volume("busy")


def test_status_with_udev_shows_open_mapping_and_mount(
    make_loop, fast_pbkdf, tmp_path: Path
) -> None:
    loop = make_loop(32)
    cryptsetup.luks_format(loop.path, PASS, key_bits=512, pbkdf=fast_pbkdf, label="vm-store")
    mapped = cryptsetup.open_volume(loop.path, "vmstore", PASS)
    run(["mkfs.ext4", "-q", str(mapped)], check=True)
    mnt = tmp_path / "store"
    mount(mapped, mnt)
    run(["udevadm", "settle"], check=True)
    try:
        result = subprocess.run(
            [sys.executable, "-m", "imgvault.cli.main", "status", "--json"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        devices = {d["path"]: d for d in json.loads(result.stdout)["devices"]}
        entry = devices[str(loop.path)]
        assert entry["encryption"]["state"] == "open"
        assert entry["encryption"]["mapping"] == {"name": "vmstore", "path": str(mapped)}
        assert entry["encryption"]["cipher_description"].endswith("512-bit key = AES-256-XTS")
        crypt = devices[str(mapped)]
        assert crypt["type"] == "crypt"
        assert crypt["underlying"] == [str(loop.path)]
        assert crypt["mountpoints"] == [str(mnt)]

        # udev is running in the guest: its database, not a blkid probe, gave the type.
        import pyudev

        udev_dev = pyudev.Devices.from_device_file(pyudev.Context(), str(loop.path))
        assert udev_dev.properties.get("ID_FS_TYPE") == "crypto_LUKS"
        assert any(d.kind == "crypt" for d in list_block_devices())
        human = subprocess.run(
            [sys.executable, "-m", "imgvault.cli.main", "status"],
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert f"open as {mapped}" in human
    finally:
        umount(mnt)
        cryptsetup.close_volume("vmstore")
