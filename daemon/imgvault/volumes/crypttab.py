"""/etc/crypttab and /etc/fstab entries for a data volume, so it is unlocked and mounted at boot.

Both files belong to the admin: imgvault changes only the line of its own volume (found by
mapping name or UUID in crypttab, by /dev/mapper path or mount point in fstab) or appends one,
and keeps every other byte (comments, tabs, other entries, a missing final newline) as it was.
Both entries carry `nofail` and `x-systemd.device-timeout=`, so a missing or locked data disk
delays boot by the timeout instead of dropping it into emergency mode: an imaging server must
come up, and its data volume can be unlocked after. Files are replaced atomically, mode kept.
"""

import difflib
import re
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from imgvault.errors import ImgvaultError
from imgvault.system.atomic import write_atomic
from imgvault.system.run import run

_TIMESPAN = re.compile(r"^\d+(us|ms|s|min|h)?$")


class TabError(ImgvaultError):
    pass


@dataclass(frozen=True)
class TabChange:
    path: Path
    old: str
    new: str

    @property
    def changed(self) -> bool:
        return self.old != self.new

    def diff(self) -> str:
        return "".join(
            difflib.unified_diff(
                self.old.splitlines(keepends=True),
                self.new.splitlines(keepends=True),
                fromfile=str(self.path),
                tofile=f"{self.path} (new)",
            )
        )


def check_timeout(timeout: str) -> str:
    if not _TIMESPAN.match(timeout):
        raise TabError(
            f"invalid device timeout {timeout!r}",
            "give a systemd time span such as 90s, 2min or 0 (wait forever)",
        )
    return timeout


def check_key_file(key_file: str) -> str:
    """`none` (ask for the passphrase at boot) or an absolute path to a root-only key file."""
    if key_file == "none":
        return key_file
    path = Path(key_file)
    if not path.is_absolute():
        raise TabError(f"key file {key_file} must be an absolute path", "e.g. /etc/keys/pacs.key")
    try:
        info = path.stat()
    except OSError as error:
        raise TabError(f"cannot use key file {key_file}: {error.strerror}") from None
    if info.st_uid != 0 or stat.S_IMODE(info.st_mode) & 0o077:
        raise TabError(
            f"key file {key_file} is readable by others (mode "
            f"{stat.S_IMODE(info.st_mode):04o}, owner uid {info.st_uid})",
            f"chown root:root {key_file} && chmod 0600 {key_file}",
        )
    return key_file


def systemd_escape(name: str) -> str:
    """The unit-name form of `name` (pacs-store -> pacs\\x2dstore), by systemd-escape."""
    return run(["systemd-escape", "--", name], check=True).stdout.strip()


def crypttab_entry(name: str, uuid: str, key_file: str, timeout: str, discard: bool) -> str:
    options = ["luks", "nofail", f"x-systemd.device-timeout={check_timeout(timeout)}"]
    if discard:
        options.append("discard")
    return f"{name}\tUUID={uuid}\t{check_key_file(key_file)}\t{','.join(options)}\n"


def fstab_entry(name: str, mountpoint: str, fstype: str, timeout: str) -> str:
    if not mountpoint.startswith("/") or mountpoint == "/" or re.search(r"\s", mountpoint):
        raise TabError(
            f"invalid mount point {mountpoint!r} for a data volume",
            "give an absolute directory other than / without spaces, e.g. /srv/pacs",
        )
    options = [
        "defaults",
        "nofail",
        f"x-systemd.device-timeout={check_timeout(timeout)}",
        f"x-systemd.requires=systemd-cryptsetup@{systemd_escape(name)}.service",
    ]
    return f"/dev/mapper/{name}\t{mountpoint}\t{fstype}\t{','.join(options)}\t0\t2\n"


def replace_entry(
    path: Path, text: str, entry: str, ours: Callable[[list[str]], bool | None]
) -> str:
    """`text` with our entry line replaced by `entry`, or with `entry` appended. `ours` tells,
    from a line's fields, whether it is our entry (True), someone else's entry that claims
    our name or mount point (None: a conflict, refused) or unrelated (False). Every other
    line is kept byte for byte."""
    lines = text.splitlines(keepends=True)
    hits: list[int] = []
    for index, line in enumerate(lines):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        verdict = ours(line.split())
        if verdict is None:
            raise TabError(
                f"{path} line {index + 1} claims this volume's name or mount point for "
                f"something else: {line.strip()}",
                "edit or remove that line by hand (or pick another mount point), then run "
                "this again",
            )
        if verdict:
            hits.append(index)
    if len(hits) > 1:
        numbers = ", ".join(str(index + 1) for index in hits)
        raise TabError(
            f"{path} has several entries for this volume (lines {numbers})",
            "remove the stale ones by hand, then run this again",
        )
    if hits:
        lines[hits[0]] = entry
    else:
        if lines and not lines[-1].endswith("\n"):
            lines[-1] += "\n"
        lines.append(entry)
    return "".join(lines)


def _read(path: Path) -> str:
    try:
        return path.read_bytes().decode()
    except FileNotFoundError:
        return ""
    except (OSError, UnicodeDecodeError) as error:
        raise TabError(f"cannot read {path}: {error}", "check the file and run as root") from None


def plan_crypttab(path: Path, name: str, uuid: str, device: str, entry: str) -> TabChange:
    sources = {f"UUID={uuid}", f"/dev/disk/by-uuid/{uuid}", device}

    def ours(fields: list[str]) -> bool | None:
        source = fields[1] if len(fields) > 1 else ""
        if source in sources:
            return True
        return None if fields[0] == name else False

    old = _read(path)
    return TabChange(path, old, replace_entry(path, old, entry, ours))


def plan_fstab(path: Path, name: str, mountpoint: str, entry: str) -> TabChange:
    mapper = f"/dev/mapper/{name}"

    def ours(fields: list[str]) -> bool | None:
        if fields[0] == mapper:
            return True
        target = fields[1].rstrip("/") if len(fields) > 1 else ""
        return None if target == mountpoint.rstrip("/") else False

    old = _read(path)
    return TabChange(path, old, replace_entry(path, old, entry, ours))


def apply_change(change: TabChange) -> bool:
    """Write the change (atomically, keeping the file's mode); False if there was none."""
    if not change.changed:
        return False
    mode = stat.S_IMODE(change.path.stat().st_mode) if change.path.exists() else 0o644
    write_atomic(change.path, change.new.encode(), mode=mode)
    return True
