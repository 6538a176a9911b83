"""The cryptsetup wrapper: every LUKS operation imgvault performs goes through here.

cryptsetup runs from argument lists with `--batch-mode`; keys are passed only on stdin
(`--key-file=-`) or through inherited pipes (`/dev/fd/N`), never in argv or the environment.
Failures become the typed errors of `imgvault.volumes.errors`.
"""

import contextlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from imgvault.secret import Secret
from imgvault.system.run import CommandResult, SecretFd, run, run_streaming
from imgvault.volumes.errors import CryptsetupError, NotLuksError, error_for, not_luks
from imgvault.volumes.luks import LuksHeader, Pbkdf, parse_luks1, parse_luks2

# LUKS2 with AES-128-XTS: cryptsetup's own default key is 512 bits (AES-256-XTS), so the key
# size is always passed explicitly.
DEFAULT_CIPHER = "aes-xts-plain64"
DEFAULT_KEY_BITS = 256
DEFAULT_HASH = "sha256"
DEFAULT_PBKDF = Pbkdf(kind="argon2id")


def _cryptsetup(
    args: Sequence[str],
    device: str | Path,
    *,
    key: Secret | None = None,
    fd_secrets: Sequence[SecretFd] = (),
    timeout: float | None = None,
) -> CommandResult:
    result = run(
        ["cryptsetup", "--batch-mode", *args],
        stdin_secret=key,
        fd_secrets=fd_secrets,
        timeout=timeout,
    )
    if not result.ok:
        raise error_for(result, str(device))
    return result


def probe_identity(device: str | Path) -> dict[str, str]:
    """blkid's low-level probe of `device`: TYPE, VERSION, UUID, LABEL, ... ({} if nothing)."""
    result = run(["blkid", "--probe", "--output", "export", "--", str(device)])
    if result.returncode == 2:  # blkid: nothing recognised
        return {}
    if not result.ok:
        raise error_for(result, str(device))
    return dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)


def read_header(device: str | Path) -> LuksHeader:
    """Read the LUKS1 or LUKS2 header of `device` (no key needed)."""
    identity = probe_identity(device)
    if identity.get("TYPE") != "crypto_LUKS":
        raise not_luks(str(device))
    if identity.get("VERSION") == "1":
        dump = _cryptsetup(["luksDump", "--", str(device)], device)
        return parse_luks1(dump.stdout, identity)
    return parse_luks2(dump_metadata(device), identity)


def is_luks(device: str | Path) -> bool:
    try:
        read_header(device)
    except NotLuksError:
        return False
    return True


def luks_format(
    device: str | Path,
    key: Secret,
    *,
    cipher: str = DEFAULT_CIPHER,
    key_bits: int = DEFAULT_KEY_BITS,
    hash_name: str = DEFAULT_HASH,
    pbkdf: Pbkdf = DEFAULT_PBKDF,
    sector_size: int | None = None,
    label: str | None = None,
) -> LuksHeader:
    """Create a LUKS2 header on `device` with `key` in keyslot 0. Destroys what was there:
    callers check for existing data first."""
    args = [
        "luksFormat",
        "--type",
        "luks2",
        "--cipher",
        cipher,
        "--key-size",
        str(key_bits),
        "--hash",
        hash_name,
        *pbkdf.cryptsetup_args(),
        "--key-file=-",
    ]
    if sector_size is not None:
        args += ["--sector-size", str(sector_size)]
    if label is not None:
        args += ["--label", label]
    _cryptsetup([*args, "--", str(device)], device, key=key)
    return read_header(device)


def test_key(device: str | Path, key: Secret) -> int:
    """Check `key` against `device` without activating anything; returns the keyslot it opens."""
    result = _cryptsetup(
        ["open", "--test-passphrase", "--verbose", "--key-file=-", "--", str(device)],
        device,
        key=key,
    )
    return _reported_keyslot(result, "unlocked", device)


def _reported_keyslot(result: CommandResult, verb: str, device: str | Path) -> int:
    """The N of cryptsetup --verbose's "Key slot N <verb>." line."""
    for line in result.stdout.splitlines():
        if line.startswith("Key slot ") and line.rstrip(".").endswith(verb):
            return int(line.split()[2])
    raise CryptsetupError(f"cryptsetup did not say which keyslot of {device} was {verb}")


def open_volume(device: str | Path, name: str, key: Secret, *, read_only: bool = False) -> Path:
    """Activate `device` as /dev/mapper/`name` (needs device-mapper)."""
    args = ["open", "--type", "luks", "--key-file=-"]
    if read_only:
        args.append("--readonly")
    _cryptsetup([*args, "--", str(device), name], device, key=key)
    return Path("/dev/mapper") / name


def close_volume(name: str) -> None:
    _cryptsetup(["close", "--", name], f"/dev/mapper/{name}")


def add_key(
    device: str | Path,
    existing_key: Secret,
    new_key: Secret,
    *,
    pbkdf: Pbkdf = DEFAULT_PBKDF,
    keyslot: int | None = None,
) -> int:
    """Add `new_key` in a free (or the given) keyslot, authorised by `existing_key`."""
    existing_fd, new_fd = SecretFd(existing_key), SecretFd(new_key)
    args = ["luksAddKey", "--verbose", *pbkdf.cryptsetup_args()]
    if keyslot is not None:
        args += ["--key-slot", str(keyslot)]
    args.append(f"--key-file={existing_fd.open()}")
    result = _cryptsetup(
        [*args, "--", str(device), new_fd.open()], device, fd_secrets=(existing_fd, new_fd)
    )
    return _reported_keyslot(result, "created", device)


def change_key(
    device: str | Path, old_key: Secret, new_key: Secret, *, pbkdf: Pbkdf = DEFAULT_PBKDF
) -> int:
    """Replace the passphrase `old_key` with `new_key`; returns the keyslot now holding it
    (LUKS2 rewrites the same slot when it can)."""
    old_fd, new_fd = SecretFd(old_key), SecretFd(new_key)
    args = ["luksChangeKey", "--verbose", *pbkdf.cryptsetup_args(), f"--key-file={old_fd.open()}"]
    result = _cryptsetup(
        [*args, "--", str(device), new_fd.open()], device, fd_secrets=(old_fd, new_fd)
    )
    return _reported_keyslot(result, "created", device)


def kill_slot(device: str | Path, keyslot: int, remaining_key: Secret) -> None:
    """Wipe `keyslot`, authorised by `remaining_key`, which must open another keyslot (so the
    volume stays openable; in batch mode cryptsetup would otherwise ask for nothing)."""
    _cryptsetup(
        ["luksKillSlot", "--key-file=-", "--", str(device), str(keyslot)],
        device,
        key=remaining_key,
    )


# --- Header backups and re-encryption (volume header / volume reencrypt) ---


def dump_metadata(device_or_file: str | Path) -> dict[str, Any]:
    """The raw LUKS2 JSON area of a device or a header backup file (digests and salts included,
    which `LuksHeader` leaves out): what a backup is compared on."""
    dump = _cryptsetup(
        ["luksDump", "--dump-json-metadata", "--", str(device_or_file)], device_or_file
    )
    try:
        metadata: dict[str, Any] = json.loads(dump.stdout)
    except json.JSONDecodeError as error:
        raise CryptsetupError(
            f"cryptsetup printed unreadable LUKS2 metadata for {device_or_file}: {error}",
            "check the header with 'cryptsetup luksDump --debug'; restore it from a header "
            "backup if it is damaged",
        ) from error
    return metadata


def luks_uuid(device_or_file: str | Path) -> str:
    return _cryptsetup(["luksUUID", "--", str(device_or_file)], device_or_file).stdout.strip()


def header_backup(device: str | Path, backup_file: Path) -> None:
    """Copy the whole LUKS header (metadata and keyslot areas) of `device` to a new file."""
    _cryptsetup(
        ["luksHeaderBackup", "--header-backup-file", str(backup_file), "--", str(device)], device
    )


def header_restore(device: str | Path, backup_file: Path) -> None:
    """Overwrite the LUKS header of `device` with `backup_file`. Callers verify first."""
    _cryptsetup(
        ["luksHeaderRestore", "--header-backup-file", str(backup_file), "--", str(device)],
        device,
    )


def reencrypt(
    device: str | Path,
    keys: Sequence[Secret],
    options: Sequence[str],
    on_progress: Callable[[dict[str, Any]], None],
    *,
    active_name: str | None,
) -> None:
    """Run `cryptsetup reencrypt` (or `--resume-only` in `options`) to the end.

    cryptsetup re-wraps every keyslot with the new volume key, asking one passphrase per
    keyslot in slot order; `keys` are those passphrases. One key goes exactly as given
    (`--key-file=-`); several go one a line on stdin, which is how cryptsetup reads prompts
    without a terminal (so they cannot contain a newline). With `active_name` (the volume's
    open mapping) it runs online; without, offline (--force-offline-reencrypt).
    """
    args = ["reencrypt", *options, "--progress-json"]
    where = (
        ["--force-offline-reencrypt", "--", str(device)]
        if active_name is None
        else ["--active-name", active_name]
    )
    if len(keys) == 1:
        args.append("--key-file=-")
        stdin = Secret(keys[0].reveal())
    else:
        if any(b"\n" in key.reveal() for key in keys):
            raise CryptsetupError(
                f"cannot re-encrypt {device}: a passphrase contains a newline, and cryptsetup "
                "reads the passphrases of several keyslots one a line",
                "change that passphrase first ('imgvaultctl volume key change')",
            )
        stdin = Secret(b"".join(key.reveal() + b"\n" for key in keys))

    def on_line(line: str) -> None:
        if line.startswith("{"):
            with contextlib.suppress(json.JSONDecodeError):
                on_progress(json.loads(line))

    try:
        result = run_streaming(
            ["cryptsetup", "--batch-mode", *args, *where], on_line, stdin_secret=stdin
        )
    finally:
        stdin.wipe()
    if not result.ok:
        raise error_for(result, str(device))


def repair(device: str | Path, key: Secret) -> None:
    """Recover the hot zone of a re-encryption that was cut off (crash, SIGKILL, power cut)."""
    _cryptsetup(["repair", "--key-file=-", "--", str(device)], device, key=key)
