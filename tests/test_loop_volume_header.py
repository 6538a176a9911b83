"""Header backup, verify and restore with real cryptsetup on loop devices (tier: loop)."""

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from imgvault.secret import Secret
from imgvault.volumes import cryptsetup
from imgvault.volumes.header_backup import backup_header
from imgvault.volumes.header_verify import (
    HeaderBackupError,
    compare_header,
    plan_restore,
    restore_header,
)
from imgvault.volumes.registry import VolumeRecord, load_registry, save_registry

pytestmark = pytest.mark.loop
PASS = Secret("header-test passphrase")


@pytest.fixture
def state(volume_env_here):  # private state/config dirs, for ctl() and the test's own calls
    return volume_env_here


def register(name: str, device: Path) -> None:
    uuid = cryptsetup.luks_uuid(device)
    save_registry(
        {name: VolumeRecord(name, uuid, str(device), "aes-128-xts", "2026-11-25T10:00:00Z")}
    )


def test_backup_is_0600_named_by_volume_and_recorded(make_loop, fast_pbkdf, state) -> None:
    loop = make_loop(32)
    cryptsetup.luks_format(loop.path, PASS, pbkdf=fast_pbkdf)
    register("pacs", loop.path)
    result = state.ctl("volume", "header", "backup", "pacs", "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    backup = Path(report["backup"])
    uuid = cryptsetup.luks_uuid(loop.path)
    assert backup.parent == state.state / "header-backups"
    assert backup.name.startswith(f"pacs.{uuid}.") and backup.name.endswith("Z.luksheader")
    assert report["uuid"] == uuid
    assert stat.S_IMODE(backup.stat().st_mode) == 0o600
    assert stat.S_IMODE(backup.parent.stat().st_mode) == 0o700
    assert [p.name for p in backup.parent.iterdir()] == [backup.name]  # no temporary left
    record = load_registry()["pacs"]
    assert record.header_backup == str(backup) and record.header_backup_time
    verify = state.ctl("volume", "header", "verify", "pacs")
    assert verify.returncode == 0, verify.stderr
    assert "matches the header of pacs" in verify.stdout


def test_verify_reports_a_keyslot_added_since_the_backup(
    make_loop, fast_pbkdf, tmp_path: Path, state: Path
) -> None:
    loop = make_loop(32)
    cryptsetup.luks_format(loop.path, PASS, pbkdf=fast_pbkdf)
    backup = backup_header(loop.path, tmp_path / "backups", "v")
    cryptsetup.add_key(loop.path, PASS, Secret("second"), pbkdf=fast_pbkdf)
    comparison = compare_header(backup, loop.path)
    assert comparison.same_volume and comparison.same_volume_key
    assert [(d.part, d.backup) for d in comparison.differences] == [("keyslot 1", "absent")]
    result = state.ctl("volume", "header", "verify", str(loop.path), str(backup))
    assert result.returncode == 1
    assert "keyslot 1:" in result.stdout and "make a new backup" in result.stdout


def test_restore_brings_back_a_wiped_header(make_loop, fast_pbkdf, tmp_path: Path, state) -> None:
    loop = make_loop(32)
    cryptsetup.luks_format(loop.path, PASS, pbkdf=fast_pbkdf)
    backup = backup_header(loop.path, tmp_path / "backups", "v")
    with loop.path.open("r+b") as disk:  # a stray mkfs/dd over the first MiB
        disk.write(b"\0" * (1 << 20))
        disk.flush()
        os.fsync(disk.fileno())
    assert not cryptsetup.is_luks(loop.path)
    refused = state.ctl("volume", "header", "restore", str(loop.path), str(backup), "--yes")
    assert refused.returncode == 1
    assert "cannot read the LUKS header" in refused.stderr and "--force" in refused.stderr
    assert not cryptsetup.is_luks(loop.path)  # nothing written
    result = state.ctl(
        "volume", "header", "restore", str(loop.path), str(backup), "--yes", "--force"
    )
    assert result.returncode == 0, result.stderr
    assert cryptsetup.test_key(loop.path, PASS) == 0
    assert compare_header(backup, loop.path).matches


def test_restore_refuses_a_backup_of_another_volume(
    make_loop, fast_pbkdf, tmp_path: Path, state
) -> None:
    ours, other = make_loop(32), make_loop(32)
    cryptsetup.luks_format(ours.path, PASS, pbkdf=fast_pbkdf)
    cryptsetup.luks_format(other.path, PASS, pbkdf=fast_pbkdf)
    foreign = backup_header(other.path, tmp_path / "backups", "v")
    before = ours.path.read_bytes()[: 1 << 20]
    comparison = compare_header(foreign, ours.path)
    assert not comparison.same_volume and not comparison.same_volume_key
    assert comparison.differences[0].part == "uuid"
    with pytest.raises(HeaderBackupError, match="header of another volume"):
        plan_restore(foreign, ours.path)
    result = state.ctl("volume", "header", "restore", str(ours.path), str(foreign), "--yes")
    assert result.returncode == 1
    assert "another volume" in result.stderr and "hint:" in result.stderr
    assert ours.path.read_bytes()[: 1 << 20] == before


def test_restore_refuses_a_backup_older_than_a_volume_key_change(
    make_loop, fast_pbkdf, tmp_path: Path
) -> None:
    loop = make_loop(32)
    cryptsetup.luks_format(loop.path, PASS, pbkdf=fast_pbkdf)
    stale = backup_header(loop.path, tmp_path / "backups", "v")
    subprocess.run(
        ["cryptsetup", "reencrypt", "--batch-mode", "--force-offline-reencrypt", "--pbkdf",
         "pbkdf2", "--pbkdf-force-iterations", "1000", "--key-file=-", str(loop.path)],
        input=PASS.reveal(), check=True, capture_output=True,
    )  # fmt: skip
    comparison = compare_header(stale, loop.path)
    assert comparison.same_volume and not comparison.same_volume_key
    with pytest.raises(HeaderBackupError, match="different volume key"):
        restore_header(stale, loop.path)
    assert cryptsetup.test_key(loop.path, PASS) >= 0


def test_tampered_backup_is_reported_and_an_identical_one_not_rewritten(
    make_loop, fast_pbkdf, tmp_path: Path, state
) -> None:
    loop = make_loop(32)
    cryptsetup.luks_format(loop.path, PASS, pbkdf=fast_pbkdf)
    backup = backup_header(loop.path, tmp_path / "backups", "v")
    assert restore_header(backup, loop.path) is False  # identical: nothing written
    garbage = tmp_path / "garbage.luksheader"
    garbage.write_bytes(b"not a header" * 100)
    result = state.ctl("volume", "header", "verify", str(loop.path), str(garbage))
    assert result.returncode == 1
    assert "not a readable LUKS2 header backup" in result.stderr
    # Corrupt the wrapped key in keyslot 0 of a copy: the JSON is intact, the key is not.
    offset = int(cryptsetup.dump_metadata(backup)["keyslots"]["0"]["area"]["offset"])
    data = bytearray(backup.read_bytes())
    data[offset + 100] ^= 0xFF
    tampered = tmp_path / "tampered.luksheader"
    tampered.write_bytes(bytes(data))
    comparison = compare_header(tampered, loop.path)
    assert [(d.part, d.device) for d in comparison.differences] == [
        ("keyslot 0", "key material differs")
    ]
    # Both JSON copies damaged: not a header any more.
    tampered.write_bytes(backup.read_bytes().replace(b'"keyslots":{', b'"keyslots":['))
    with pytest.raises(HeaderBackupError, match="not a readable LUKS2 header backup"):
        compare_header(tampered, loop.path)


def test_missing_device_and_unknown_name_are_clear_errors(state) -> None:
    missing = state.ctl("volume", "header", "backup", "/dev/does-not-exist")
    assert missing.returncode == 4
    assert "does not exist" in missing.stderr and "hint:" in missing.stderr
    unknown = state.ctl("volume", "header", "backup", "nosuchvolume")
    assert unknown.returncode == 4 and "no volume named 'nosuchvolume'" in unknown.stderr


def test_restore_without_a_terminal_needs_yes(make_loop, fast_pbkdf, tmp_path: Path, state) -> None:
    loop = make_loop(32)
    cryptsetup.luks_format(loop.path, PASS, pbkdf=fast_pbkdf)
    backup = backup_header(loop.path, tmp_path / "backups", "v")
    cryptsetup.add_key(loop.path, PASS, Secret("second"), pbkdf=fast_pbkdf)
    refused = state.ctl("volume", "header", "restore", str(loop.path), str(backup))
    assert refused.returncode == 1
    assert "needs a confirmation" in refused.stderr and "--yes" in refused.stderr
    assert len(cryptsetup.read_header(loop.path).keyslots) == 2  # nothing restored
    done = state.ctl("volume", "header", "restore", str(loop.path), str(backup), "--yes")
    assert done.returncode == 0, done.stderr
    assert "keyslot 1:" in done.stdout
    assert len(cryptsetup.read_header(loop.path).keyslots) == 1
    again = state.ctl("volume", "header", "restore", str(loop.path), str(backup), "--yes")
    assert "nothing to restore" in again.stdout


def test_luks1_backups_compare_by_key_digest_and_bytes(
    luks1_loop, fast_pbkdf, tmp_path: Path
) -> None:
    loop = luks1_loop
    backup = backup_header(loop.path, tmp_path / "backups", "v")
    assert compare_header(backup, loop.path).matches
    cryptsetup.add_key(loop.path, Secret("pw"), Secret("second"), pbkdf=fast_pbkdf)
    changed = compare_header(backup, loop.path)
    assert [d.part for d in changed.differences] == ["keyslots"] and changed.same_volume_key
