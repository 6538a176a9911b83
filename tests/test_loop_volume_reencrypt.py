"""Offline re-encryption on loop devices (tier: loop): profile change, key rotation, keyslots
kept, registry and header backup updated, refusals that change nothing, and an interrupted run
(SIGKILL) that is detected in the header and resumed."""

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from imgvault.secret import Secret
from imgvault.system.run import run
from imgvault.volumes import cryptsetup
from imgvault.volumes.header_verify import compare_header
from imgvault.volumes.jobs import Job, load_jobs, save_job
from imgvault.volumes.reencrypt import ReencryptError, Target, reencrypt_volume
from imgvault.volumes.registry import VolumeRecord, load_registry, save_registry

pytestmark = pytest.mark.loop
PASS = Secret("reencrypt passphrase")
RECOVERY = Secret("RECOVERY-KEY-0123-4567")
CHILD = Path(__file__).with_name("reencrypt_child.py")


@pytest.fixture
def state(volume_env_here):  # private state/config dirs, for ctl() and the test's own calls
    return volume_env_here


def volume_with_recovery(make_loop, fast_pbkdf, size_mib: int = 32) -> Path:
    loop = make_loop(size_mib)
    cryptsetup.luks_format(loop.path, PASS, pbkdf=fast_pbkdf)
    assert cryptsetup.add_key(loop.path, PASS, RECOVERY, pbkdf=fast_pbkdf) == 1
    record = VolumeRecord(
        "pacs", cryptsetup.luks_uuid(loop.path), str(loop.path), "aes-128-xts",
        "2026-11-25T10:00:00Z", recovery_keyslot=1,
    )  # fmt: skip
    save_registry({"pacs": record})
    return loop.path


def test_profile_change_keeps_every_keyslot_and_records_it(make_loop, fast_pbkdf, state) -> None:
    device = volume_with_recovery(make_loop, fast_pbkdf)
    target = Target("aes-xts-plain64", 512, fast_pbkdf, "aes-256-xts")
    reports = []
    header = reencrypt_volume(
        device, [RECOVERY, PASS], target, load_registry()["pacs"], reports.append
    )
    assert (header.cipher, header.key_bits, header.reencryption) == ("aes-xts-plain64", 512, None)
    assert reports and reports[-1].percent == 100.0
    assert header.cipher_description.endswith("AES-256-XTS")
    record = load_registry()["pacs"]
    assert record.profile == "aes-256-xts"
    assert record.recovery_keyslot == cryptsetup.test_key(device, RECOVERY)
    assert cryptsetup.test_key(device, PASS) != record.recovery_keyslot
    assert record.last_key_change and record.header_backup_time == record.last_key_change
    assert compare_header(Path(record.header_backup or ""), device).matches
    assert "reencrypt_old_keyslots" not in record.extra


def test_key_rotation_makes_a_new_volume_key(make_loop, fast_pbkdf, state, tmp_path) -> None:
    device = volume_with_recovery(make_loop, fast_pbkdf)
    before = cryptsetup.dump_metadata(device)["digests"]
    header = cryptsetup.read_header(device)
    reencrypt_volume(device, [PASS, RECOVERY], Target.rotation(header, fast_pbkdf))
    after = cryptsetup.read_header(device)
    assert (after.cipher, after.key_bits) == (header.cipher, 256)
    new_digests = {d["digest"] for d in cryptsetup.dump_metadata(device)["digests"].values()}
    assert new_digests.isdisjoint(d["digest"] for d in before.values())


def test_a_missing_keyslot_passphrase_or_a_wrong_one_changes_nothing(
    make_loop, fast_pbkdf, state, tmp_path
) -> None:
    device = volume_with_recovery(make_loop, fast_pbkdf)
    snapshot = device.read_bytes()[: 16 << 20]
    target = Target("aes-xts-plain64", 512, fast_pbkdf, "aes-256-xts")
    with pytest.raises(ReencryptError, match=r"keyslot\(s\) 1 .* would drop") as caught:
        reencrypt_volume(device, [PASS], target)
    assert "recovery key too" in caught.value.hint
    key_file = state.key_file("key", PASS.reveal())
    wrong = state.ctl(
        "volume", "reencrypt", "pacs", "--profile", "aes-256-xts", "--key-file", str(key_file),
        "--key-file", "-", stdin=b"not the recovery key",
    )  # fmt: skip
    assert wrong.returncode == 2
    assert "no keyslot of" in wrong.stderr and "hint:" in wrong.stderr
    assert device.read_bytes()[: 16 << 20] == snapshot


def test_cli_refusals(make_loop, fast_pbkdf, state) -> None:
    device = volume_with_recovery(make_loop, fast_pbkdf)
    unknown = state.ctl("volume", "reencrypt", "pacs", "--profile", "aes-512-magic")
    assert unknown.returncode == 78
    assert "unknown cipher profile 'aes-512-magic'" in unknown.stderr
    assert "aes-128-xts, aes-256-xts" in unknown.stderr
    same = state.ctl("volume", "reencrypt", "pacs", "--profile", "aes-128-xts")
    assert same.returncode == 0 and "nothing to do" in same.stdout
    nothing = state.ctl("volume", "reencrypt", str(device), "--resume")
    assert nothing.returncode == 0 and "no re-encryption to resume" in nothing.stdout
    as_json = json.loads(state.ctl("volume", "reencrypt", "pacs", "--resume", "--json").stdout)
    assert as_json["changed"] is False and as_json["encryption"]["key_bits"] == 256
    plain = make_loop(8)
    not_luks = state.ctl("volume", "reencrypt", str(plain.path), "--rotate-key")
    assert not_luks.returncode == 1 and "is not a LUKS volume" in not_luks.stderr
    uuid = cryptsetup.luks_uuid(device)
    save_job(Job("j1", "reencrypt", "pacs", str(device), uuid, "to aes-256-xts", os.getpid()))
    busy = state.ctl("volume", "reencrypt", "pacs", "--resume")
    assert busy.returncode == 1
    assert f"being re-encrypted right now (to aes-256-xts, pid {os.getpid()}" in busy.stderr


def test_luks1_is_refused_with_the_conversion_hint(luks1_loop, fast_pbkdf) -> None:
    loop = luks1_loop
    with pytest.raises(ReencryptError, match="LUKS1") as caught:
        reencrypt_volume(
            loop.path, [Secret("pw")], Target("aes-xts-plain64", 512, fast_pbkdf, None)
        )
    assert "cryptsetup convert" in caught.value.hint


def test_sigkilled_reencryption_is_detected_and_resumed(make_loop, fast_pbkdf, state) -> None:
    device = volume_with_recovery(make_loop, fast_pbkdf, size_mib=384)
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(device), "512"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(PASS.reveal() + b"\n" + RECOVERY.reveal() + b"\n")
    child.stdin.close()
    first = json.loads(child.stdout.readline())  # the run has initialised its header state
    os.killpg(child.pid, signal.SIGKILL)
    child.wait()
    assert first["percent"] < 100
    header = cryptsetup.read_header(device)
    assert header.reencryption is not None
    assert header.reencryption.mode == "reencrypt"

    status = json.loads(state.ctl("status", "--json").stdout)
    entry = next(d for d in status["devices"] if d["path"] == str(device))
    assert "reencrypt-interrupted" in [f["code"] for f in entry["compliance"]]

    resumed = state.ctl(
        "volume", "reencrypt", "pacs", "--resume", "--key-file", "-", "--progress-json",
        stdin=RECOVERY.reveal(),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    progress = [json.loads(line) for line in resumed.stdout.splitlines()]
    assert progress[-1]["percent"] == 100.0
    header = cryptsetup.read_header(device)
    assert (header.key_bits, header.reencryption) == (512, None)
    assert {cryptsetup.test_key(device, PASS), cryptsetup.test_key(device, RECOVERY)} == {
        s.id for s in header.keyslots
    }
    record = load_registry()["pacs"]
    assert record.recovery_keyslot == cryptsetup.test_key(device, RECOVERY)
    jobs = load_jobs()
    assert [job.effective_state for job in jobs] == ["finished"]


def test_sigterm_stops_cryptsetup_at_a_safe_point_and_resume_finishes(
    make_loop, fast_pbkdf, state
) -> None:
    loop = make_loop(256)
    cryptsetup.luks_format(loop.path, PASS, pbkdf=fast_pbkdf)
    key = state.key_file("key", PASS.reveal())
    ctl = subprocess.Popen(
        [sys.executable, "-m", "imgvault.cli.main", "volume", "reencrypt", str(loop.path),
         "--rotate-key", "--key-file", str(key), "--progress-json", "--hotzone-size", "4"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=state.env,
    )  # fmt: skip
    assert ctl.stdout is not None
    first = json.loads(ctl.stdout.readline())
    ctl.terminate()
    assert ctl.wait(timeout=60) == 143, (first, ctl.stdout.read(), ctl.stderr.read())
    assert first["percent"] < 100
    # imgvaultctl waited for its cryptsetup: no re-encryption is running any more.
    assert run(["pgrep", "-f", f"cryptsetup.*reencrypt.*{loop.path}"]).returncode == 1
    assert cryptsetup.read_header(loop.path).reencryption is not None
    [job] = load_jobs()
    assert job.effective_state == "failed" and "run --resume" in (job.error or "")
    resumed = state.ctl("volume", "reencrypt", str(loop.path), "--resume", "--key-file", str(key))
    assert resumed.returncode == 0, resumed.stderr
    assert cryptsetup.read_header(loop.path).reencryption is None
    assert cryptsetup.test_key(loop.path, PASS) >= 0


def test_prompts_ask_each_keyslot_with_three_tries(make_loop, fast_pbkdf, state) -> None:
    device = volume_with_recovery(make_loop, fast_pbkdf)
    snapshot = device.read_bytes()[: 16 << 20]
    args = ["volume", "reencrypt", "pacs", "--rotate-key"]
    code, output = state.on_terminal(args, [b"one", b"two", b"three"])
    assert code == 2 and output.count("Passphrase for keyslot 0 of pacs:") == 3, output
    assert "(3 tries)" in output and "wrong passphrase (2/3)" in output
    assert device.read_bytes()[: 16 << 20] == snapshot
    code, output = state.on_terminal(args, [PASS.reveal(), b"typo", RECOVERY.reveal()])
    assert code == 0, output
    assert "Passphrase for keyslot 1 of pacs:" in output and "re-encryption finished" in output
    assert load_registry()["pacs"].recovery_keyslot == cryptsetup.test_key(device, RECOVERY)
