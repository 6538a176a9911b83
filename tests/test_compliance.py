"""Compliance findings: unit tests on parsed fixtures, then real headers on loop devices."""

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest

from imgvault.policy import load_policy
from imgvault.secret import Secret
from imgvault.volumes import cryptsetup
from imgvault.volumes.compliance import check_volume, format_findings
from imgvault.volumes.header_backup import backup_header
from imgvault.volumes.jobs import Job
from imgvault.volumes.luks import Pbkdf, parse_luks2
from imgvault.volumes.registry import VolumeRecord, save_registry

FIXTURES = Path(__file__).parent / "fixtures"
PASS = Secret("compliance passphrase")
POLICY = load_policy().volumes


def record(**changes: object) -> VolumeRecord:
    base = VolumeRecord(
        "pacs", "uuid-1", "/dev/sdb", "aes-128-xts", "2026-11-25T10:00:00Z",
        recovery_keyslot=1, last_key_change="2026-11-25T10:00:00Z",
        header_backup=__file__, header_backup_time="2026-11-25T10:00:01Z",
    )  # fmt: skip
    return replace(base, **changes)


def interrupted_header():  # keyslots 0 (pbkdf2 1000 it.) and 1, a reencrypt keyslot
    metadata = json.loads((FIXTURES / "luks2-reencrypt-interrupted.json").read_text())
    return parse_luks2(metadata, {"UUID": "uuid-1", "VERSION": "2"})


def codes(findings) -> list[str]:
    return [f.code for f in findings]


def test_interrupted_reencryption_is_an_error_unless_its_job_runs() -> None:
    header = interrupted_header()
    found = check_volume(header, record(), POLICY)
    assert "reencrypt-interrupted" in codes(found)
    interrupted = next(f for f in found if f.code == "reencrypt-interrupted")
    assert interrupted.severity == "error"
    assert interrupted.hint == "imgvaultctl volume reencrypt pacs --resume"
    job = Job("j", "reencrypt", "pacs", "/dev/sdb", "uuid-1", "to aes-256-xts", pid=os.getpid())
    job.progress = {"percent": 42.5}
    running = check_volume(header, record(), POLICY, job)
    assert "reencrypt-interrupted" not in codes(running)
    assert next(f for f in running if f.code == "reencrypt-running").message.startswith(
        "re-encryption in progress: 42.5%"
    )
    dead = replace(job, pid=2**22 + 12345)  # no such process: it was killed
    assert "reencrypt-interrupted" in codes(check_volume(header, record(), POLICY, dead))


def test_registry_findings_recovery_key_and_backups(tmp_path: Path) -> None:
    header = interrupted_header()
    assert "no-recovery-key" in codes(check_volume(header, record(recovery_keyslot=None), POLICY))
    assert "no-recovery-key" in codes(check_volume(header, record(recovery_keyslot=7), POLICY))
    unregistered = check_volume(header, None, POLICY, device="/dev/sdb")
    assert {"no-recovery-key", "no-header-backup"} <= set(codes(unregistered))
    backup_fix = next(f.hint for f in unregistered if f.code == "no-header-backup")
    assert backup_fix == "imgvaultctl volume header backup /dev/sdb"  # a path, not the UUID
    gone = check_volume(header, record(header_backup=str(tmp_path / "gone")), POLICY)
    assert "header-backup-missing" in codes(gone)
    stale = record(last_key_change="2026-11-25T12:00:00+00:00")  # formats mix
    assert "header-backup-stale" in codes(check_volume(header, stale, POLICY))
    fine = check_volume(header, record(), POLICY)
    assert not {"no-recovery-key", "no-header-backup", "header-backup-stale"} & set(codes(fine))


def test_human_section_names_the_fix() -> None:
    text = format_findings({"/dev/sdb": check_volume(interrupted_header(), record(), POLICY)})
    assert "/dev/sdb: ERROR pbkdf2-iterations: keyslot(s) 0, 1" in text
    assert "    fix: imgvaultctl volume reencrypt pacs --resume" in text
    assert format_findings({"/dev/sdc": []}).endswith("every LUKS volume meets the policy")


@pytest.fixture
def env(volume_env_here):  # private state/config dirs, for ctl() and the test's own calls
    return volume_env_here


def status_findings(env, device: Path) -> list[dict]:
    result = env.ctl("status", "--json")
    assert result.returncode == 0, result.stderr
    entry = next(d for d in json.loads(result.stdout)["devices"] if d["path"] == str(device))
    return entry["compliance"]


@pytest.mark.loop
def test_real_headers_luks1_low_pbkdf2_single_keyslot(luks1_loop, env) -> None:
    luks1 = luks1_loop
    found = {f["code"]: f for f in status_findings(env, luks1.path)}
    assert {"luks1", "pbkdf2-iterations", "few-keyslots", "no-recovery-key"} <= set(found)
    assert found["luks1"]["severity"] == "error"
    assert "cryptsetup convert --type luks2" in found["luks1"]["hint"]
    assert "keyslot(s) 0 use PBKDF2" in found["pbkdf2-iterations"]["message"]


@pytest.mark.loop
def test_real_headers_key_size_against_policy(make_loop, fast_pbkdf, env) -> None:
    small, large = make_loop(32), make_loop(32)
    cryptsetup.luks_format(small.path, PASS, key_bits=256, pbkdf=fast_pbkdf)
    cryptsetup.luks_format(large.path, PASS, key_bits=512, pbkdf=fast_pbkdf)
    assert "weak-cipher" not in [f["code"] for f in status_findings(env, small.path)]
    policy = env.root / "config" / "policy.toml"
    policy.write_text(policy.read_text().replace("min_key_bits = 256", "min_key_bits = 512"))
    weak = next(f for f in status_findings(env, small.path) if f["code"] == "weak-cipher")
    assert "256-bit key = AES-128-XTS is below the policy's 512-bit minimum" in weak["message"]
    assert "weak-cipher" not in [f["code"] for f in status_findings(env, large.path)]


@pytest.mark.loop
def test_a_compliant_registered_volume_has_no_findings(make_loop, env) -> None:
    loop = make_loop(32)
    strong = Pbkdf(kind="argon2id", iterations=4, memory_kib=32 * 1024, parallel=1)
    cryptsetup.luks_format(loop.path, PASS, pbkdf=strong)
    slot = cryptsetup.add_key(loop.path, PASS, Secret("recovery"), pbkdf=strong)
    backup = backup_header(loop.path, env.root / "backups", "v")
    uuid = cryptsetup.luks_uuid(loop.path)
    save_registry(
        {"pacs": record(uuid=uuid, device=str(loop.path), recovery_keyslot=slot,
                        header_backup=str(backup), header_backup_time="2026-11-25T10:00:01Z")}
    )  # fmt: skip
    assert status_findings(env, loop.path) == []
    assert "compliance:" in env.ctl("status").stdout
