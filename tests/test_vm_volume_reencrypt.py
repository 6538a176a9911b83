"""Online re-encryption of a mounted, filled ext4 on real dm-crypt (tier: vm, UML guest):
AES-128-XTS to AES-256-XTS in the background with the file system in use, and a run SIGKILLed
part-way that is resumed, with every file's checksum intact before and after a close/reopen."""

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from imgvault.secret import Secret
from imgvault.system.run import run
from imgvault.volumes import cryptsetup
from imgvault.volumes.registry import VolumeRecord, load_registry, save_registry

pytestmark = pytest.mark.vm
PASS = Secret("online reencrypt passphrase")
RECOVERY = Secret("RECOVERY-9999-8888")
CHILD = Path(__file__).with_name("reencrypt_child.py")


@pytest.fixture
def env(volume_env_here):  # private state/config dirs (cheap argon2id), for ctl() and engine
    return volume_env_here


def fill(mnt: Path, total_mib: int) -> dict[str, str]:
    """Files of assorted sizes (4 KiB .. 4 MiB) of random data; their SHA-256 by name."""
    sums, written, n = {}, 0, 0
    while written < total_mib << 20:
        size = 4096 << (n % 11)
        data = os.urandom(size)
        name = f"study-{n:04d}.dcm"
        (mnt / name).write_bytes(data)
        sums[name] = hashlib.sha256(data).hexdigest()
        written, n = written + size, n + 1
    run(["sync"], check=True)
    return sums


def checksums(mnt: Path) -> dict[str, str]:
    Path("/proc/sys/vm/drop_caches").write_text("3\n")  # read from the device, not the cache
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(mnt.iterdir())
            if p.is_file()}  # fmt: skip


def open_mounted_volume(make_loop, fast_pbkdf, tmp_path: Path, name: str, size_mib: int):
    loop = make_loop(size_mib)
    cryptsetup.luks_format(loop.path, PASS, pbkdf=fast_pbkdf)
    recovery_slot = cryptsetup.add_key(loop.path, PASS, RECOVERY, pbkdf=fast_pbkdf)
    save_registry(
        {name: VolumeRecord(name, cryptsetup.luks_uuid(loop.path), str(loop.path),
                            "aes-128-xts", "2026-11-25T10:00:00Z", recovery_keyslot=recovery_slot)}
    )  # fmt: skip
    mapped = cryptsetup.open_volume(loop.path, name, PASS)
    run(["mkfs.ext4", "-q", str(mapped)], check=True)
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    run(["mount", str(mapped), str(mnt)], check=True)
    return loop.path, mapped, mnt


def close_reopen_and_checksum(device: Path, name: str, mnt: Path, key: Secret) -> dict[str, str]:
    run(["umount", str(mnt)], check=True)
    cryptsetup.close_volume(name)
    mapped = cryptsetup.open_volume(device, name, key)
    run(["mount", "-o", "ro", str(mapped), str(mnt)], check=True)
    try:
        return checksums(mnt)
    finally:
        run(["umount", str(mnt)], check=True)
        cryptsetup.close_volume(name)


def test_online_reencrypt_in_background_to_aes_256_xts(make_loop, fast_pbkdf, env) -> None:
    device, _mapped, mnt = open_mounted_volume(make_loop, fast_pbkdf, env.root, "vmpacs", 64)
    sums = fill(mnt, 32)
    started = env.ctl(
        "volume", "reencrypt", "vmpacs", "--profile", "aes-256-xts", "--background",
        "--key-file", str(env.key_file("pass", PASS.reveal())),
        "--key-file", str(env.key_file("recovery", RECOVERY.reveal())),
    )  # fmt: skip
    assert started.returncode == 0, started.stderr
    assert "started in the background" in started.stdout
    jobs_dir = env.state / "jobs"
    seen_states = set()
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        (mnt / "written-during-reencryption.txt").write_text(f"{time.time()}\n")  # in use
        files = list(jobs_dir.glob("*.json")) if jobs_dir.is_dir() else []
        if files:
            job = json.loads(files[0].read_text())
            seen_states.add(job["state"])
            if job["state"] != "running":
                break
        time.sleep(0.2)
    assert job["state"] == "finished", job
    assert job["description"].endswith("online")
    assert job["progress"]["percent"] == 100.0
    header = cryptsetup.read_header(device)
    assert (header.key_bits, header.reencryption) == (512, None)
    assert header.cipher_description.endswith("AES-256-XTS")
    assert {k: v for k, v in checksums(mnt).items() if k in sums} == sums
    record = load_registry()["vmpacs"]
    assert record.profile == "aes-256-xts"
    assert record.recovery_keyslot == cryptsetup.test_key(device, RECOVERY)
    reopened = close_reopen_and_checksum(device, "vmpacs", mnt, RECOVERY)
    assert {k: v for k, v in reopened.items() if k in sums} == sums


def test_online_reencrypt_sigkilled_midway_resumes_with_every_file_intact(
    make_loop, fast_pbkdf, env
) -> None:
    device, _mapped, mnt = open_mounted_volume(make_loop, fast_pbkdf, env.root, "vmkill", 96)
    sums = fill(mnt, 48)
    child = subprocess.Popen(
        [sys.executable, str(CHILD), str(device), "512", "2"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True,
    )  # fmt: skip
    assert child.stdin is not None and child.stdout is not None
    child.stdin.write(PASS.reveal() + b"\n" + RECOVERY.reveal() + b"\n")
    child.stdin.close()
    killed_at, seen = None, []
    for line in child.stdout:
        percent = json.loads(line)["percent"]
        seen.append((percent, json.loads(line)["elapsed_ms"]))
        if 5 <= percent < 95:
            os.killpg(child.pid, signal.SIGKILL)
            killed_at = percent
            break
    child.wait()
    assert killed_at is not None, f"the run ended before it could be killed part-way: {seen}"
    header = cryptsetup.read_header(device)
    assert header.reencryption is not None  # the header knows it is unfinished
    findings = json.loads(env.ctl("status", "--json").stdout)
    entry = next(d for d in findings["devices"] if d["path"] == str(device))
    assert "reencrypt-interrupted" in [f["code"] for f in entry["compliance"]]

    # The killed run left cryptsetup's helper mappings under the mounted file system:
    # resuming needs the mapping reopened, which is refused while it is mounted.
    refused = env.ctl("volume", "reencrypt", "vmkill", "--resume", "--key-file", "-",
                          stdin=PASS.reveal())  # fmt: skip
    assert refused.returncode == 1
    assert "half-switched" in refused.stderr and "unmount the file system" in refused.stderr
    assert checksums(mnt) == sums  # still readable through the half-switched stack
    run(["umount", str(mnt)], check=True)
    resumed = env.ctl(
        "volume", "reencrypt", "vmkill", "--resume", "--key-file", "-", "--json",
        stdin=PASS.reveal(),
    )  # fmt: skip
    assert resumed.returncode == 0, resumed.stderr
    report = json.loads(resumed.stdout)
    assert report["job"]["state"] == "finished"
    header = cryptsetup.read_header(device)
    assert (header.key_bits, header.reencryption) == (512, None)
    assert Path("/dev/mapper/vmkill").exists()  # reopened under its name
    run(["mount", "/dev/mapper/vmkill", str(mnt)], check=True)
    assert checksums(mnt) == sums
    assert close_reopen_and_checksum(device, "vmkill", mnt, PASS) == sums
    record = load_registry()["vmkill"]
    assert record.recovery_keyslot == cryptsetup.test_key(device, RECOVERY)
    print(f"killed at {killed_at}%, resumed, {len(sums)} files intact")
