"""Cipher profiles applied to a device (unit tier): key size, PBKDF arguments, sector size,
PBKDF memory limits. The loop tier checks the same on real headers."""

from pathlib import Path

import pytest

from imgvault.devices.blockdev import BlockInfo
from imgvault.policy import SHIPPED_POLICY, load_policy
from imgvault.volumes import lifecycle
from imgvault.volumes.errors import OutOfMemoryError

VOLUMES = load_policy(SHIPPED_POLICY).volumes


def device(logical: int, physical: int, size: int = 64 << 20) -> BlockInfo:
    return BlockInfo(Path("/dev/sdx"), "sdx", "8:16", logical, physical, size)


def test_shipped_profiles_pass_key_size_and_argon2id_explicitly() -> None:
    default = VOLUMES.profile()
    assert (default.name, default.cipher, default.key_bits) == (
        "aes-128-xts",
        "aes-xts-plain64",
        256,
    )
    assert VOLUMES.profile("aes-256-xts").key_bits == 512
    assert default.pbkdf_setting().cryptsetup_args() == [
        "--pbkdf", "argon2id", "--iter-time", "2000", "--pbkdf-memory", "1048576",
        "--pbkdf-parallel", "4",
    ]  # fmt: skip
    assert default.pbkdf_setting(65536).memory_kib == 65536  # --pbkdf-memory overrides


@pytest.mark.parametrize(
    ("logical", "physical", "size", "requested", "expected"),
    [
        (512, 512, 64 << 20, None, 512),  # 512-native: 4096 could tear on power loss
        (512, 4096, 64 << 20, None, 4096),  # 512e
        (4096, 4096, 64 << 20, None, 4096),  # 4Kn
        (512, 4096, (64 << 20) + 512, None, 512),  # size not a multiple of 4096
        (512, 512, 64 << 20, 4096, 4096),  # the admin's choice
    ],
)
def test_sector_size_follows_the_device(
    logical: int, physical: int, size: int, requested: int | None, expected: int
) -> None:
    chosen, reason = lifecycle.choose_sector_size(
        VOLUMES.profile(), device(logical, physical, size), requested
    )
    assert chosen == expected and reason


def test_sector_size_below_the_logical_block_size_is_refused() -> None:
    with pytest.raises(lifecycle.VolumeError, match="use --sector-size 4096"):
        lifecycle.choose_sector_size(VOLUMES.profile(), device(4096, 4096), 512)


def test_pbkdf_memory_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal: 2097152 kB\nMemFree: 1 kB\nMemAvailable: 1048576 kB\n")
    monkeypatch.setattr(lifecycle, "MEMINFO", meminfo)
    lifecycle.check_pbkdf_memory(1048576, "argon2id")
    lifecycle.check_pbkdf_memory(8 << 20, "pbkdf2")  # no memory cost to pay
    with pytest.raises(OutOfMemoryError, match=r"\(1048576 KiB available\)") as caught:
        lifecycle.check_pbkdf_memory(1048577, "argon2id")
    assert "pbkdf_memory_kib" in caught.value.hint
    with pytest.raises(OutOfMemoryError, match="above cryptsetup's maximum"):
        lifecycle.check_pbkdf_memory(4194305, "argon2i")
