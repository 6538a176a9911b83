"""`imgvaultctl volume format`, keys and their refusals on real cryptsetup and loop devices
(tier: loop). The CLI runs as a child process; passphrases go through key files or stdin."""

import hashlib
import json
import os
import subprocess
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from imgvault.devices.loop import LoopDevice
from imgvault.filecrypt import format as filecrypt_format
from imgvault.secret import Secret
from imgvault.system.run import run
from imgvault.volumes import cryptsetup, recovery
from imgvault.volumes.errors import WrongKeyError

pytestmark = pytest.mark.loop
PASS = b"correct horse battery staple"


def digest(loop: LoopDevice) -> str:
    with loop.path.open("rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def fmt(volume_env, loop: LoopDevice, *extra: str, name: str = "pacs"):
    key = volume_env.key_file("pass.key", PASS)
    return volume_env.ctl(
        "volume", "format", str(loop.path), "--name", name, "--key-file", str(key), *extra
    )


def test_format_default_profile_two_keyslots_backup_and_registry(volume_env, make_loop) -> None:
    loop = make_loop(32)
    result = fmt(volume_env, loop, "--json")
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    header = cryptsetup.read_header(loop.path)
    assert (header.version, header.cipher, header.key_bits) == (2, "aes-xts-plain64", 256)
    assert header.cipher_description.endswith("256-bit key = AES-128-XTS")
    assert header.hash == "sha256" and header.label == "pacs"
    assert [s.pbkdf.kind for s in header.keyslots if s.pbkdf] == ["argon2id", "argon2id"]
    # A 512-byte loop device: cryptsetup would accept 4096, imgvault keeps 512 (torn writes).
    assert header.sector_size == 512 and "512-byte physical" in report["sector_size_reason"]
    assert cryptsetup.test_key(loop.path, Secret(PASS)) == 0
    shown = Secret(report["recovery_key"])
    assert len(report["recovery_key"]) == 8 * 6 + 7
    assert cryptsetup.test_key(loop.path, shown) == report["recovery_keyslot"] == 1

    backup = Path(report["header_backup"])
    assert backup.stat().st_mode & 0o777 == 0o600
    assert backup.parent.stat().st_mode & 0o777 == 0o700
    with loop.path.open("rb") as f:
        assert f.read(backup.stat().st_size) == backup.read_bytes()
    record = volume_env.registry()["pacs"]
    assert record["uuid"] == header.uuid and record["device"] == str(loop.path)
    assert record["recovery_keyslot"] == 1 and record["header_backup"] == str(backup)
    assert record["last_key_change"] and record["profile"] == "aes-128-xts"

    listed = json.loads(volume_env.ctl("volume", "list", "--json").stdout)["volumes"]
    assert [(v["name"], v["state"]) for v in listed] == [("pacs", "locked")]


def test_aes_256_profile_and_sector_size_choice(volume_env, make_loop, tmp_path) -> None:
    loop = make_loop(32)
    assert (
        fmt(volume_env, loop, "--profile", "aes-256-xts", "--sector-size", "4096").returncode == 0
    )
    header = cryptsetup.read_header(loop.path)
    assert (header.key_bits, header.sector_size) == (512, 4096)
    assert header.cipher_description.endswith("AES-256-XTS")

    backing = tmp_path / "4k.img"
    backing.write_bytes(b"")
    os.truncate(backing, 32 * 1024 * 1024)
    attached = run(["losetup", "--find", "--show", "--sector-size", "4096", str(backing)])
    assert attached.ok, attached.stderr
    native = LoopDevice(Path(attached.stdout.strip()), backing)
    try:
        assert fmt(volume_env, native, name="native4k").returncode == 0
        assert cryptsetup.read_header(native.path).sector_size == 4096  # chosen automatically
    finally:
        run(["losetup", "--detach", str(native.path)], check=True)


def write_mbr(loop: LoopDevice) -> None:
    """A DOS partition table with one Linux partition (sectors 2048-8191)."""
    entry = bytes([0, 0, 0, 0, 0x83, 0, 0, 0]) + (2048).to_bytes(4, "little")
    entry += (6144).to_bytes(4, "little")
    with loop.path.open("r+b") as f:
        f.seek(446)
        f.write(entry)
        f.seek(510)
        f.write(b"\x55\xaa")


@pytest.mark.parametrize("content", ["ext4", "partition table", "luks"])
def test_format_refuses_existing_data_without_force_and_changes_nothing(
    volume_env, make_loop, content: str
) -> None:
    loop = make_loop(32)
    if content == "ext4":
        run(["mkfs.ext4", "-q", "-L", "studies", str(loop.path)], check=True)
        expected = "ext4 file system or signature, label 'studies'"
    elif content == "partition table":
        write_mbr(loop)
        expected = "dos partition table"
    else:
        cryptsetup.luks_format(
            loop.path, Secret("old"), pbkdf=cryptsetup.Pbkdf("pbkdf2", iterations=1000)
        )
        expected = "LUKS2 header"
    before = digest(loop)
    refused = fmt(volume_env, loop)
    assert refused.returncode == 5
    assert expected in refused.stderr and "--force" in refused.stderr
    # --force without --yes needs a terminal to confirm on.
    unconfirmed = fmt(volume_env, loop, "--force")
    assert unconfirmed.returncode == 1 and "needs a confirmation" in unconfirmed.stderr
    assert digest(loop) == before
    assert not (volume_env.state / "volumes.json").exists()

    forced = fmt(volume_env, loop, "--force", "--yes")
    assert forced.returncode == 0, forced.stderr
    assert cryptsetup.test_key(loop.path, Secret(PASS)) == 0


def test_format_refuses_a_mounted_device_even_with_force(volume_env, make_loop, tmp_path) -> None:
    loop = make_loop(32)
    run(["mkfs.ext4", "-q", "-E", "lazy_itable_init=0,lazy_journal_init=0", str(loop.path)])
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    before = digest(loop)  # a mounted ext4 reads differently (in-memory superblock state)
    run(["mount", "-o", "ro", str(loop.path), str(mnt)], check=True)  # ro: no writes of its own
    try:
        refused = fmt(volume_env, loop, "--force", "--yes")
        assert refused.returncode == 5 and f"is mounted on {mnt}" in refused.stderr
        assert "unmount it first" in refused.stderr
    finally:
        run(["umount", str(mnt)], check=True)
    assert digest(loop) == before


@pytest.mark.parametrize(
    ("extra", "code", "message"),
    [
        (["--profile", "aes-512-magic"], 78, "unknown cipher profile 'aes-512-magic'"),
        (["--pbkdf-memory", "4194305"], 3, "above cryptsetup's maximum 4194304 KiB"),
        (["--name", "bad/name"], 1, "invalid volume name 'bad/name'"),
        (["--mount-point", "relative/dir"], 1, "is not an absolute path"),
        (["--label", "x" * 48], 1, "label is longer than 47 bytes"),
    ],
)
def test_format_bad_input_changes_nothing(
    volume_env, make_loop, extra: list[str], code: int, message: str
) -> None:
    loop = make_loop(16)
    before = digest(loop)
    key = volume_env.key_file("pass.key", PASS)
    args = ["volume", "format", str(loop.path), "--key-file", str(key), *extra]
    if "--name" not in extra:
        args += ["--name", "pacs"]
    result = volume_env.ctl(*args)
    assert result.returncode == code and message in result.stderr, result.stderr
    assert "hint:" in result.stderr
    assert digest(loop) == before


def test_pbkdf_memory_above_available_is_refused_before_writing(
    volume_env, make_loop, monkeypatch
) -> None:
    """The check itself (the UML guest test proves it against a real small memory)."""
    from imgvault.volumes import lifecycle

    loop = make_loop(16)
    before = digest(loop)
    fake = volume_env.root / "meminfo"
    fake.write_text("MemTotal: 1048576 kB\nMemAvailable: 524288 kB\n")
    monkeypatch.setattr(lifecycle, "MEMINFO", fake)
    monkeypatch.setenv("IMGVAULT_STATE_DIR", volume_env.env["IMGVAULT_STATE_DIR"])
    monkeypatch.setenv("IMGVAULT_CONFIG_DIR", volume_env.env["IMGVAULT_CONFIG_DIR"])
    from imgvault.policy import load_policy

    request = lifecycle.FormatRequest(
        loop.path, "pacs", Secret(PASS), load_policy().volumes.profile(), pbkdf_memory_kib=1048576
    )
    with pytest.raises(lifecycle.OutOfMemoryError, match=r"more than this machine can give"):
        lifecycle.format_volume(request)
    assert digest(loop) == before


def test_missing_device_and_not_a_block_device(volume_env, tmp_path) -> None:
    key = volume_env.key_file("pass.key", PASS)
    missing = volume_env.ctl(
        "volume", "format", "/dev/nonexistent", "--name", "x", "--key-file", str(key)
    )
    assert missing.returncode == 4 and "/dev/nonexistent does not exist" in missing.stderr
    plain = tmp_path / "file.img"
    plain.write_bytes(b"\0" * 4096)
    notblock = volume_env.ctl("volume", "format", str(plain), "--name", "x", "--key-file", str(key))
    assert notblock.returncode == 4 and "is not a block device" in notblock.stderr
    assert plain.read_bytes() == b"\0" * 4096
    unknown = volume_env.ctl("volume", "unlock", "nosuch", "--test", "--key-file", str(key))
    assert unknown.returncode == 4 and "no volume named 'nosuch'" in unknown.stderr


def test_unlock_test_on_a_device_that_is_not_luks(volume_env, make_loop) -> None:
    loop = make_loop(8)
    key = volume_env.key_file("pass.key", PASS)
    result = volume_env.ctl("volume", "unlock", str(loop.path), "--test", "--key-file", str(key))
    assert result.returncode == 1 and "is not a LUKS volume" in result.stderr


def test_recovery_key_file_is_0600_and_unlocks_as_typed(volume_env, make_loop) -> None:
    loop = make_loop(16)
    out = volume_env.root / "pacs.recovery"
    assert fmt(volume_env, loop, "--recovery-key-file", str(out)).returncode == 0
    assert out.stat().st_mode & 0o777 == 0o600
    grouped = out.read_text().strip()
    messy = grouped.lower().replace("-", " ").replace("0", "o")
    result = volume_env.ctl(
        "volume", "unlock", "pacs", "--test", "--recovery-key", "--key-file", "-",
        stdin=messy.encode(),
    )  # fmt: skip
    assert result.returncode == 0 and "opens keyslot 1" in result.stdout, result.stderr
    # An existing file is never overwritten, and the refusal comes before any write.
    loop2 = make_loop(16)
    before = digest(loop2)
    again = fmt(volume_env, loop2, "--recovery-key-file", str(out), name="other")
    assert again.returncode == 1 and "already exists" in again.stderr
    assert digest(loop2) == before and out.read_text().strip() == grouped


def test_recovery_key_encrypted_to_a_certificate_decrypts_with_openssl(
    volume_env, make_loop, tmp_path
) -> None:
    private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "escrow officer")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(private.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + timedelta(days=30))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(private.public_key()), False)
        .sign(private, hashes.SHA256())
    )  # fmt: skip
    cert_pem, key_pem = tmp_path / "escrow.pem", tmp_path / "escrow.key"
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(
        private.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    loop = make_loop(16)
    envelope = volume_env.root / "pacs-recovery.p7m"
    result = fmt(
        volume_env, loop, "--recovery-cert", str(cert_pem), "--recovery-key-file", str(envelope)
    )
    assert result.returncode == 0, result.stderr
    assert envelope.stat().st_mode & 0o777 == 0o600
    assert envelope.read_bytes().startswith(b"\x30")  # DER ContentInfo
    with envelope.open("rb") as f:  # the image format: AuthEnvelopedData, RSA-OAEP
        parsed = filecrypt_format.parse(f, envelope.stat().st_size, str(envelope))
    assert parsed is not None
    assert "RECOVERY KEY" not in result.stdout
    decrypted = subprocess.run(
        ["openssl", "cms", "-decrypt", "-binary", "-inform", "DER", "-in", str(envelope),
         "-inkey", str(key_pem), "-recip", str(cert_pem)],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    key = recovery.normalize(Secret(decrypted))
    assert cryptsetup.test_key(loop.path, key) == 1


def test_keys_add_change_remove_and_last_keyslot_guard(volume_env, make_loop) -> None:
    loop = make_loop(16)
    assert fmt(volume_env, loop).returncode == 0
    first_change = volume_env.registry()["pacs"]["last_key_change"]
    current = volume_env.key_file("current.key", PASS)
    second = volume_env.key_file("second.key", b"second admin passphrase")
    rotated = volume_env.key_file("rotated.key", b"rotated passphrase")

    added = volume_env.ctl("volume", "key", "add", "pacs", "--key-file", str(current),
                           "--new-key-file", str(second), "--json")  # fmt: skip
    assert added.returncode == 0 and json.loads(added.stdout)["keyslot"] == 2
    assert cryptsetup.test_key(loop.path, Secret(b"second admin passphrase")) == 2

    listing = json.loads(volume_env.ctl("volume", "key", "list", "pacs", "--json").stdout)
    slots = {s["keyslot"]: s for s in listing["keyslots"]}
    assert sorted(slots) == [0, 1, 2] and slots[1]["recovery"] and not slots[0]["recovery"]
    assert slots[2]["pbkdf"]["kind"] == "argon2id" and slots[2]["priority"] == "normal"
    human = volume_env.ctl("volume", "key", "list", "pacs").stdout
    assert "recovery key" in human and "argon2id" in human

    changed = volume_env.ctl("volume", "key", "change", "pacs", "--key-file", str(second),
                             "--new-key-file", str(rotated))  # fmt: skip
    assert changed.returncode == 0, changed.stderr
    assert cryptsetup.test_key(loop.path, Secret(b"rotated passphrase")) == 2
    with pytest.raises(WrongKeyError):
        cryptsetup.test_key(loop.path, Secret(b"second admin passphrase"))

    # Authorising with the passphrase of the slot being removed is refused.
    own = volume_env.ctl(
        "volume", "key", "remove", "pacs", "--slot", "2", "--key-file", str(rotated)
    )
    assert own.returncode == 1 and "the one being removed" in own.stderr
    for slot in ("1", "2"):
        removed = volume_env.ctl("volume", "key", "remove", "pacs", "--slot", slot,
                                 "--key-file", str(current))  # fmt: skip
        assert removed.returncode == 0, removed.stderr
    record = volume_env.registry()["pacs"]
    assert record["recovery_keyslot"] is None and record["last_key_change"] >= first_change
    before = digest(loop)
    last = volume_env.ctl(
        "volume", "key", "remove", "pacs", "--slot", "0", "--key-file", str(current)
    )
    assert last.returncode == 1 and "last usable keyslot" in last.stderr
    assert digest(loop) == before
    assert [s.id for s in cryptsetup.read_header(loop.path).keyslots] == [0]


def test_wrong_passphrase_changes_nothing(volume_env, make_loop) -> None:
    loop = make_loop(16)
    assert fmt(volume_env, loop).returncode == 0
    wrong = volume_env.key_file("wrong.key", b"not it")
    new = volume_env.key_file("new.key", b"new passphrase")
    before, registry = digest(loop), volume_env.registry()
    for args in (
        ["key", "add", "pacs", "--key-file", str(wrong), "--new-key-file", str(new)],
        ["key", "change", "pacs", "--key-file", str(wrong), "--new-key-file", str(new)],
        ["key", "remove", "pacs", "--slot", "1", "--key-file", str(wrong)],
        ["unlock", "pacs", "--test", "--key-file", str(wrong)],
    ):
        result = volume_env.ctl("volume", *args)
        assert result.returncode == 2 and "no keyslot" in result.stderr, (args, result.stderr)
    assert digest(loop) == before and volume_env.registry() == registry
    lax = volume_env.key_file("lax.key", PASS)
    lax.chmod(0o644)
    result = volume_env.ctl("volume", "unlock", "pacs", "--test", "--key-file", str(lax))
    assert result.returncode == 1 and "chmod 600" in result.stderr


def test_three_wrong_passphrases_at_the_prompt(volume_env, make_loop) -> None:
    loop = make_loop(16)
    assert fmt(volume_env, loop).returncode == 0
    code, output = volume_env.on_terminal(
        ["volume", "unlock", "pacs", "--test"], [b"one", b"two", b"three"]
    )
    assert code == 2 and output.count("Passphrase:") == 3, output
    assert "(3 tries)" in output
    code, output = volume_env.on_terminal(["volume", "unlock", "pacs", "--test"], [b"wrong", PASS])
    assert code == 0 and "opens keyslot 0" in output, output


def test_new_passphrase_is_typed_twice(volume_env, make_loop) -> None:
    loop = make_loop(16)
    before = digest(loop)
    args = ["volume", "format", str(loop.path), "--name", "pacs"]
    code, output = volume_env.on_terminal(args, [b"first", b"different"])
    assert code == 1 and "the two passphrases differ" in output
    assert digest(loop) == before
    code, output = volume_env.on_terminal(args, [b"typed twice", b"typed twice"])
    assert code == 0 and "RECOVERY KEY" in output, output
    assert cryptsetup.test_key(loop.path, Secret(b"typed twice")) == 0


def test_list_shows_a_volume_whose_device_is_gone_as_missing(volume_env, make_loop) -> None:
    loop = make_loop(16)
    assert fmt(volume_env, loop).returncode == 0
    # Another header UUID on the recorded device: the registered volume is no longer there.
    other_uuid = "00000000-0000-4000-8000-000000000000"
    run(
        ["cryptsetup", "--batch-mode", "luksUUID", "--uuid", other_uuid, str(loop.path)], check=True
    )
    listed = json.loads(volume_env.ctl("volume", "list", "--json").stdout)["volumes"]
    assert [(v["name"], v["state"], v["device"]) for v in listed] == [("pacs", "missing", None)]
    human = volume_env.ctl("volume", "list").stdout
    assert "missing" in human and f"({loop.path})" in human
    key = volume_env.key_file("k.key", PASS)
    result = volume_env.ctl("volume", "unlock", "pacs", "--test", "--key-file", str(key))
    assert result.returncode == 4 and "no device with LUKS UUID" in result.stderr


def test_mkfs_without_device_mapper_is_refused_before_formatting(volume_env, make_loop) -> None:
    """This machine has no device-mapper: --mkfs would need the volume open."""
    loop = make_loop(16)
    before = digest(loop)
    result = fmt(volume_env, loop, "--mkfs", "ext4")
    assert result.returncode == 69 and "--mkfs ext4 needs the volume opened" in result.stderr
    assert "no device-mapper" in result.stderr
    assert digest(loop) == before and not (volume_env.state / "volumes.json").exists()


def test_lost_passphrase_recovery_key_sets_a_new_one_then_recovery_key_rotates(
    volume_env, make_loop
) -> None:
    loop = make_loop(16)
    first = volume_env.root / "first.recovery"
    assert fmt(volume_env, loop, "--recovery-key-file", str(first)).returncode == 0
    new = volume_env.key_file("new.key", b"new admin passphrase")
    # The passphrase is lost: the recovery key (as written to its file) authorises a new one.
    added = volume_env.ctl("volume", "key", "add", "pacs", "--recovery-key", "--key-file",
                           str(first), "--new-key-file", str(new))  # fmt: skip
    assert added.returncode == 0, added.stderr
    assert cryptsetup.test_key(loop.path, Secret(b"new admin passphrase")) == 2
    # Rotate the recovery key, authorised by the old one: the old keyslot is wiped.
    second = volume_env.root / "second.recovery"
    rotated = volume_env.ctl("volume", "key", "recovery", "pacs", "--recovery-key", "--key-file",
                             str(first), "--recovery-key-file", str(second), "--json")  # fmt: skip
    assert rotated.returncode == 0, rotated.stderr
    report = json.loads(rotated.stdout)
    assert report["replaced_keyslot"] == 1 and "recovery_key" not in report
    new_slot = report["keyslot"]
    assert second.stat().st_mode & 0o777 == 0o600
    assert (
        cryptsetup.test_key(loop.path, recovery.normalize(Secret(second.read_bytes()))) == new_slot
    )
    with pytest.raises(WrongKeyError):
        cryptsetup.test_key(loop.path, recovery.normalize(Secret(first.read_bytes())))
    assert volume_env.registry()["pacs"]["recovery_keyslot"] == new_slot
    listing = json.loads(volume_env.ctl("volume", "key", "list", "pacs", "--json").stdout)
    assert [s["keyslot"] for s in listing["keyslots"] if s["recovery"]] == [new_slot]


def test_format_refuses_active_swap_even_with_force(volume_env, make_loop) -> None:
    loop = make_loop(16)
    run(["mkswap", str(loop.path)], check=True)
    before = digest(loop)
    run(["swapon", str(loop.path)], check=True)
    try:
        refused = fmt(volume_env, loop, "--force", "--yes")
        assert refused.returncode == 5, refused.stderr
        assert f"in use by active swap {loop.path}" in refused.stderr
    finally:
        run(["swapoff", str(loop.path)], check=True)
    assert digest(loop) == before


def test_shipped_policy_formats_with_strong_argon2id(volume_env, make_loop) -> None:
    """Production defaults, not the test policy: argon2id asking for 1 GiB and 4 threads,
    benchmarked for 2 s per keyslot. cryptsetup caps threads at the CPU count and lowers the
    memory until time cost 4 fits in 2 s: measured here (2 vCPUs) 399383 KiB, 2 threads."""
    shipped = Path(__file__).resolve().parents[1] / "policies" / "default.toml"
    (volume_env.root / "config" / "policy.toml").write_text(shipped.read_text())
    loop = make_loop(32)
    result = fmt(volume_env, loop)
    assert result.returncode == 0, result.stderr
    header = cryptsetup.read_header(loop.path)
    assert (header.cipher, header.key_bits, header.hash) == ("aes-xts-plain64", 256, "sha256")
    for slot in header.keyslots:
        assert slot.pbkdf is not None and slot.pbkdf.kind == "argon2id"
        memory, threads = slot.pbkdf.memory_kib or 0, slot.pbkdf.parallel or 0
        assert 65536 <= memory <= 1048576, memory  # far above the test policy's 1024
        assert 1 <= threads <= min(4, os.cpu_count() or 1)
        assert slot.pbkdf.iterations is not None and slot.pbkdf.iterations >= 4
