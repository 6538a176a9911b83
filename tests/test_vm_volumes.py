"""`imgvaultctl volume format/unlock/lock/list` on real dm-crypt (tier: vm, inside the UML
guest): mount points, idempotency, a lock refused while a process uses the volume."""

import hashlib
import json
import subprocess
import time
from pathlib import Path

import pytest

from imgvault.devices.loop import LoopDevice
from imgvault.volumes.mappings import holders

pytestmark = pytest.mark.vm
PASS = b"vm tier passphrase"


def digest(loop: LoopDevice) -> str:
    with loop.path.open("rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def mapping_open(loop: LoopDevice) -> bool:
    return any(m.is_crypt for m in holders(loop.path.name))


def formatted(volume_env, loop: LoopDevice, mnt: Path, *extra: str) -> Path:
    key = volume_env.key_file("pass.key", PASS)
    recovery = volume_env.root / "recovery.txt"
    result = volume_env.ctl(
        "volume", "format", str(loop.path), "--name", "store", "--key-file", str(key),
        "--mount-point", str(mnt), "--recovery-key-file", str(recovery), *extra,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return key


def test_unlock_mounts_lock_unmounts_both_idempotent(volume_env, make_loop, tmp_path) -> None:
    loop = make_loop(64)
    mnt = tmp_path / "store"
    key = formatted(volume_env, loop, mnt, "--mkfs", "ext4")
    assert not mapping_open(loop)  # format leaves the volume locked

    unlocked = volume_env.ctl("volume", "unlock", "store", "--key-file", str(key))
    assert unlocked.returncode == 0, unlocked.stderr
    assert unlocked.stdout.strip() == f"store: unlocked as /dev/mapper/store, mounted on {mnt}"
    payload = b"DICOM-LIKE-PAYLOAD" * 5000
    (mnt / "study.dcm").write_bytes(payload)

    again = volume_env.ctl("volume", "unlock", "store", "--json")  # open: no key asked
    assert again.returncode == 0 and json.loads(again.stdout)["already"] is True
    listed = json.loads(volume_env.ctl("volume", "list", "--json").stdout)["volumes"][0]
    assert (listed["state"], listed["mounted_on"]) == ("unlocked", [str(mnt)])
    busy = volume_env.ctl("volume", "format", str(loop.path), "--name", "other", "--force",
                          "--yes", "--key-file", str(key))  # fmt: skip
    assert busy.returncode == 5 and "in use by device-mapper mapping store" in busy.stderr

    locked = volume_env.ctl("volume", "lock", "store")
    assert locked.returncode == 0 and locked.stdout.strip() == f"store: locked (unmounted {mnt})"
    assert not mapping_open(loop) and not (mnt / "study.dcm").exists()
    already = volume_env.ctl("volume", "lock", "store")
    assert already.returncode == 0 and already.stdout.strip() == "store: already locked"
    assert payload[:64] not in loop.backing_file.read_bytes()

    recovery = (volume_env.root / "recovery.txt").read_bytes().lower()
    by_recovery = volume_env.ctl(
        "volume", "unlock", str(loop.path), "--recovery-key", "--key-file", "-", stdin=recovery
    )
    assert by_recovery.returncode == 0, by_recovery.stderr
    try:
        assert (mnt / "study.dcm").read_bytes() == payload
    finally:
        assert volume_env.ctl("volume", "lock", "store").returncode == 0


def test_lock_refuses_and_names_the_process_using_the_volume(
    volume_env, make_loop, tmp_path
) -> None:
    loop = make_loop(64)
    mnt = tmp_path / "busy"
    key = formatted(volume_env, loop, mnt, "--mkfs", "ext4")
    assert volume_env.ctl("volume", "unlock", "store", "--key-file", str(key)).returncode == 0
    (mnt / "open.dcm").write_bytes(b"x")
    holder = subprocess.Popen(["tail", "-f", str(mnt / "open.dcm")], stdout=subprocess.DEVNULL)
    try:
        refused = volume_env.ctl("volume", "lock", "store")
        assert refused.returncode == 5
        assert f"pid {holder.pid} (tail) {mnt}/open.dcm" in refused.stderr, refused.stderr
        assert "stop those processes" in refused.stderr
        assert mapping_open(loop) and (mnt / "open.dcm").exists()  # nothing was done
    finally:
        holder.kill()
        holder.wait()
    # A working directory in the volume, and the mapped device node held open, count too.
    for argv, cwd, shown in (
        (["sleep", "300"], mnt, f"(sleep) {mnt}"),
        (["sh", "-c", "exec 3</dev/mapper/store; exec sleep 300"], tmp_path, "(sleep) /dev/dm-"),
    ):
        holder = subprocess.Popen(argv, cwd=cwd)
        try:
            for _ in range(50):  # until the shell has opened the device and exec'd sleep
                if Path(f"/proc/{holder.pid}/comm").read_text().strip() == "sleep":
                    break
                time.sleep(0.05)
            refused = volume_env.ctl("volume", "lock", "store")
            assert refused.returncode == 5 and shown in refused.stderr, refused.stderr
        finally:
            holder.kill()
            holder.wait()
    assert volume_env.ctl("volume", "lock", "store").returncode == 0
    assert not mapping_open(loop)


def test_wrong_key_and_unmountable_volume_leave_it_locked(volume_env, make_loop, tmp_path) -> None:
    loop = make_loop(32)
    mnt = tmp_path / "nofs"
    formatted(volume_env, loop, mnt)  # no --mkfs: nothing to mount
    wrong = volume_env.key_file("wrong.key", b"wrong")
    result = volume_env.ctl("volume", "unlock", "store", "--key-file", str(wrong))
    assert result.returncode == 2 and "no keyslot" in result.stderr
    assert not mapping_open(loop)
    key = volume_env.root / "pass.key"
    result = volume_env.ctl("volume", "unlock", "store", "--key-file", str(key))
    assert result.returncode == 1 and "could not be mounted" in result.stderr, result.stderr
    assert "locked again" in result.stderr
    assert not mapping_open(loop)


def test_pbkdf_memory_the_guest_cannot_give_is_refused(volume_env, make_loop) -> None:
    """The guest has 1.5 GiB: a 4 GiB argon2id cost is refused before anything is written."""
    loop = make_loop(16)
    before = digest(loop)
    key = volume_env.key_file("pass.key", PASS)
    result = volume_env.ctl(
        "volume", "format", str(loop.path), "--name", "big", "--key-file", str(key),
        "--pbkdf-memory", "4194304",
    )  # fmt: skip
    assert result.returncode == 3, result.stderr
    assert "is more than this machine can give" in result.stderr and "hint:" in result.stderr
    assert digest(loop) == before
