"""crypttab/fstab entries: only our line changes, everything else is kept byte for byte."""

import json
import os
import stat
import subprocess
from pathlib import Path

import pytest

from imgvault.secret import Secret
from imgvault.volumes import cryptsetup
from imgvault.volumes.crypttab import (
    TabError,
    apply_change,
    crypttab_entry,
    fstab_entry,
    plan_crypttab,
    plan_fstab,
    systemd_escape,
)
from imgvault.volumes.registry import VolumeRecord, save_registry

UUID = "0b7c1d2e-3f40-4a5b-8c6d-7e8f9a0b1c2d"
OURS = f"pacs-store\tUUID={UUID}\tnone\tluks,nofail,x-systemd.device-timeout=90s\n"
TRICKY = (
    "# /etc/crypttab: mappings for encrypted partitions.\n"
    "#\n"
    "# <name>\t<source>\t<key>\t<options>\n"
    "cryptswap   /dev/sda3    /dev/urandom   swap,cipher=aes-xts-plain64,size=256\n"
    "\n"
    "   # an indented comment with UUID=" + UUID + "\n"
    "home\tUUID=11111111-2222-3333-4444-555555555555\tnone\tluks,discard"  # no final newline
)


def entry(**kw) -> str:
    args = {"name": "pacs-store", "uuid": UUID, "key_file": "none", "timeout": "90s"}
    return crypttab_entry(**{**args, "discard": False, **kw})


def plan(path: Path, line: str = OURS):
    return plan_crypttab(path, "pacs-store", UUID, "/dev/sdb", line)


def test_append_keeps_every_other_byte_and_fixes_the_missing_newline(tmp_path: Path) -> None:
    path = tmp_path / "crypttab"
    path.write_bytes(TRICKY.encode())
    path.chmod(0o640)
    change = plan(path, entry())
    assert change.new == TRICKY + "\n" + OURS
    diff = change.diff()
    assert diff.startswith(f"--- {path}\n+++ {path} (new)\n")
    assert f"+{OURS}" in diff
    assert apply_change(change) is True
    assert path.read_bytes() == (TRICKY + "\n" + OURS).encode()
    assert stat.S_IMODE(path.stat().st_mode) == 0o640  # mode kept
    again = plan(path, entry())
    assert not again.changed and again.diff() == ""
    assert apply_change(again) is False


def test_update_in_place_by_uuid_or_device_and_by_name(tmp_path: Path) -> None:
    path = tmp_path / "crypttab"
    old_line = f"old-name UUID={UUID} /root/old.key luks\n"
    path.write_text("# head\n" + old_line + "tail\t/dev/sdc\tnone\tluks\n")
    change = plan(path, entry(timeout="2min"))
    assert change.new.splitlines(keepends=True) == [
        "# head\n",
        OURS.replace("90s", "2min"),
        "tail\t/dev/sdc\tnone\tluks\n",
    ]
    path.write_text("pacs-store /dev/sdb none luks\n")  # by device path
    assert plan(path, entry()).new == OURS


def test_a_name_claimed_by_another_device_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "crypttab"
    path.write_text("pacs-store UUID=99999999-0000-0000-0000-000000000000 none luks\n")
    with pytest.raises(TabError, match="line 1 claims") as caught:
        plan(path, entry())
    assert "by hand" in caught.value.hint


def test_duplicate_entries_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "crypttab"
    path.write_text(f"a UUID={UUID} none luks\nb /dev/sdb none luks\n")
    with pytest.raises(TabError, match=r"several entries .*lines 1, 2"):
        plan(path, entry())


def test_entry_options_and_validation(tmp_path: Path) -> None:
    assert entry(discard=True).endswith("luks,nofail,x-systemd.device-timeout=90s,discard\n")
    with pytest.raises(TabError, match="invalid device timeout"):
        entry(timeout="90 seconds")
    loose = tmp_path / "loose.key"
    loose.write_bytes(b"k")
    loose.chmod(0o644)
    with pytest.raises(TabError, match="readable by others") as caught:
        entry(key_file=str(loose))
    assert caught.value.hint == f"chown root:root {loose} && chmod 0600 {loose}"
    with pytest.raises(TabError, match="absolute path"):
        entry(key_file="keys/pacs.key")
    if os.geteuid() == 0:
        loose.chmod(0o600)
        assert f"\t{loose}\t" in entry(key_file=str(loose))


def test_fstab_entry_and_conflicting_mount_point(tmp_path: Path) -> None:
    assert systemd_escape("pacs-store") == "pacs\\x2dstore"
    line = fstab_entry("pacs-store", "/srv/pacs", "ext4", "90s")
    assert line == (
        "/dev/mapper/pacs-store\t/srv/pacs\text4\tdefaults,nofail,x-systemd.device-timeout=90s,"
        "x-systemd.requires=systemd-cryptsetup@pacs\\x2dstore.service\t0\t2\n"
    )
    fstab = tmp_path / "fstab"
    fstab.write_text(
        "UUID=abcd / ext4 errors=remount-ro 0 1\n/dev/sdd1\t/srv/pacs/\txfs\tdefaults 0 2\n"
    )
    with pytest.raises(TabError, match="line 2 claims"):
        plan_fstab(fstab, "pacs-store", "/srv/pacs", line)
    fstab.write_text("UUID=abcd / ext4 errors=remount-ro 0 1\n")
    assert plan_fstab(fstab, "pacs-store", "/srv/pacs", line).new.endswith(line)
    with pytest.raises(TabError, match="invalid mount point"):
        fstab_entry("pacs-store", "/srv/my pacs", "ext4", "90s")


@pytest.mark.loop
def test_cli_dry_run_then_write_then_idempotent(make_loop, fast_pbkdf, tmp_path, volume_env_here):
    loop = make_loop(32)
    cryptsetup.luks_format(loop.path, Secret("pw"), pbkdf=fast_pbkdf)
    uuid = cryptsetup.luks_uuid(loop.path)
    save_registry(
        {"pacs-store": VolumeRecord("pacs-store", uuid, str(loop.path), "aes-128-xts",
                                    "2026-11-25T10:00:00Z", mountpoint="/srv/pacs",
                                    filesystem="ext4")}
    )  # fmt: skip
    crypttab, fstab = tmp_path / "crypttab", tmp_path / "fstab"
    crypttab.write_text(TRICKY)
    fstab.write_text("# fstab\nUUID=abcd / ext4 errors=remount-ro 0 1\n")
    before = (crypttab.read_bytes(), fstab.read_bytes())

    def ctl(*extra: str) -> subprocess.CompletedProcess[str]:
        return volume_env_here.ctl(
            "volume", "crypttab", "pacs-store", "--crypttab", str(crypttab), "--fstab", str(fstab),
            *extra,
        )  # fmt: skip

    dry = ctl("--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert f"+pacs-store\tUUID={uuid}\tnone\tluks,nofail" in dry.stdout
    assert "+/dev/mapper/pacs-store\t/srv/pacs\text4\t" in dry.stdout
    assert (crypttab.read_bytes(), fstab.read_bytes()) == before
    done = ctl("--json")
    report = json.loads(done.stdout)
    assert [f["written"] for f in report["files"]] == [True, True]
    assert crypttab.read_text().startswith(TRICKY + "\n")
    again = ctl()
    assert again.stdout.count("already up to date") == 2
    bad = ctl("--timeout", "soon")
    assert bad.returncode == 1 and "invalid device timeout 'soon'" in bad.stderr


@pytest.mark.parametrize("command", ["header", "reencrypt", "crypttab"])
def test_volume_ops_help_has_examples(command: str, capsys: pytest.CaptureFixture[str]) -> None:
    from imgvault.cli import main as cli_main

    with pytest.raises(SystemExit) as caught:
        cli_main.main(["volume", command, "--help"])
    assert caught.value.code == 0
    assert "examples:" in capsys.readouterr().out
