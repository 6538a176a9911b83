"""The shipped policy loads and says what the issue promises; the registry survives round trips
and never leaves a half-written file."""

from pathlib import Path

import pytest

from imgvault.policy import SHIPPED_POLICY, PolicyError, load_policy, policy_path
from imgvault.volumes.registry import (
    RegistryError,
    VolumeRecord,
    find_volume,
    load_registry,
    save_registry,
)


@pytest.fixture(autouse=True)
def _dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMGVAULT_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("IMGVAULT_CONFIG_DIR", str(tmp_path / "etc"))


def test_shipped_default_profile_is_aes_128_xts_with_explicit_256_bit_key() -> None:
    policy = load_policy()
    assert policy.source == SHIPPED_POLICY
    default = policy.volumes.profile()
    assert (default.name, default.cipher, default.key_bits) == (
        "aes-128-xts",
        "aes-xts-plain64",
        256,
    )
    assert (default.hash, default.pbkdf, default.sector_size) == ("sha256", "argon2id", 4096)
    assert policy.volumes.profile("aes-256-xts").key_bits == 512
    assert policy.volumes.header_backup_dir == Path(policy.volumes.header_backup_dir)
    assert str(policy.volumes.header_backup_dir).endswith("state/header-backups")


def test_unknown_profile_names_the_known_ones() -> None:
    with pytest.raises(PolicyError) as caught:
        load_policy().volumes.profile("aes-64-ecb")
    assert "aes-64-ecb" in str(caught.value)
    assert "aes-128-xts, aes-256-xts" in caught.value.hint


def test_admin_policy_replaces_the_shipped_one(tmp_path: Path) -> None:
    admin = tmp_path / "etc" / "policy.toml"
    admin.parent.mkdir()
    admin.write_text(SHIPPED_POLICY.read_text().replace('"aes-128-xts"\n', '"aes-256-xts"\n', 1))
    assert policy_path() == admin
    assert load_policy().volumes.profile().name == "aes-256-xts"


@pytest.mark.parametrize(
    "text",
    ["[volumes\n", "[volumes]\ndefault_profile = 'x'\n", "", "[volumes]\nprofiles = 3\n"],
)
def test_broken_policy_is_a_clear_config_error(tmp_path: Path, text: str) -> None:
    broken = tmp_path / "broken.toml"
    broken.write_text(text)
    with pytest.raises(PolicyError) as caught:
        load_policy(broken)
    assert caught.value.exit_code == 78
    assert str(broken) in str(caught.value)


def test_registry_round_trip_and_lookup_by_name_device_or_uuid(tmp_path: Path) -> None:
    assert load_registry() == {}
    record = VolumeRecord(
        name="pacs", uuid="1234", device="/dev/sdb", profile="aes-128-xts", created="2026-11-25"
    )
    save_registry({"pacs": record})
    path = tmp_path / "state" / "volumes.json"
    assert path.stat().st_mode & 0o777 == 0o600
    loaded = load_registry()
    assert loaded == {"pacs": record}
    for key in ("pacs", "/dev/sdb", "1234"):
        assert find_volume(loaded, key) == record
    assert find_volume(loaded, "other") is None
    assert [p.name for p in path.parent.iterdir()] == ["volumes.json"]  # no temp file left


def test_corrupt_registry_is_reported_not_replaced(tmp_path: Path) -> None:
    path = tmp_path / "state" / "volumes.json"
    path.parent.mkdir()
    path.write_text("{not json")
    with pytest.raises(RegistryError, match=r"volumes\.json"):
        load_registry()
    assert path.read_text() == "{not json"
