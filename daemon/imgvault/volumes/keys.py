"""Keyslot management of a volume: list, add, change and remove passphrases.

Every change is authorised by a passphrase that stays valid, never leaves a volume without a
usable keyslot, and stamps `last_key_change` in the registry (compliance then knows whether
the header backup predates it).
"""

from dataclasses import dataclass

from imgvault.errors import ImgvaultError
from imgvault.policy import load_policy
from imgvault.secret import Secret
from imgvault.volumes import cryptsetup
from imgvault.volumes.luks import Keyslot, LuksHeader, Pbkdf
from imgvault.volumes.recovery import RecoveryTarget
from imgvault.volumes.resolve import VolumeTarget, update_record, utc_now


class KeyslotError(ImgvaultError):
    pass


@dataclass(frozen=True)
class KeyslotInfo:
    slot: Keyslot
    recovery: bool

    def to_json(self) -> dict[str, object]:
        pbkdf = self.slot.pbkdf
        return {
            "keyslot": self.slot.id,
            "type": self.slot.type,
            "priority": self.slot.priority,
            "recovery": self.recovery,
            "key_bits": self.slot.key_bits,
            "pbkdf": {
                "kind": pbkdf.kind,
                "hash": pbkdf.hash,
                "iterations": pbkdf.iterations,
                "memory_kib": pbkdf.memory_kib,
                "parallel": pbkdf.parallel,
            }
            if pbkdf
            else None,
        }


def list_keys(target: VolumeTarget) -> tuple[LuksHeader, list[KeyslotInfo]]:
    header = cryptsetup.read_header(target.device)
    recovery_slot = target.record.recovery_keyslot if target.record else None
    return header, [KeyslotInfo(s, s.id == recovery_slot) for s in header.keyslots]


def usable_keyslots(header: LuksHeader) -> list[int]:
    """Keyslots that open the volume on their own (not reencryption slots, not priority
    'ignore', which cryptsetup skips unless asked for by number)."""
    return [
        s.id for s in header.keyslots if s.type in ("luks2", "luks1") and s.priority != "ignore"
    ]


def _pbkdf_for(target: VolumeTarget) -> Pbkdf:
    volumes = load_policy().volumes
    profile = target.record.profile if target.record else None
    return volumes.profile(profile if profile in volumes.profiles else None).pbkdf_setting()


def _record_change(target: VolumeTarget, moved: tuple[int, int | None] | None = None) -> None:
    """Stamp the key change in the registry; `moved` (old slot, new slot or None) follows the
    recovery key when its slot moves or goes."""
    if target.record is None:
        return
    changes: dict[str, object] = {"last_key_change": utc_now()}
    if moved is not None and target.record.recovery_keyslot == moved[0]:
        changes["recovery_keyslot"] = moved[1]
    update_record(target.record.name, **changes)


def add_key(target: VolumeTarget, existing: Secret, new: Secret) -> int:
    """Add the passphrase `new`, authorised by `existing`; returns its keyslot."""
    if len(new) == 0:
        raise KeyslotError("the new passphrase is empty", "give a non-empty passphrase")
    slot = cryptsetup.add_key(target.device, existing, new, pbkdf=_pbkdf_for(target))
    _record_change(target)
    return slot


def change_key(target: VolumeTarget, old: Secret, new: Secret) -> tuple[int, int]:
    """Replace passphrase `old` by `new` (rotation); returns (old keyslot, new keyslot)."""
    if len(new) == 0:
        raise KeyslotError("the new passphrase is empty", "give a non-empty passphrase")
    old_slot = cryptsetup.test_key(target.device, old)
    new_slot = cryptsetup.change_key(target.device, old, new, pbkdf=_pbkdf_for(target))
    _record_change(target, (old_slot, new_slot))
    return old_slot, new_slot


def remove_key(target: VolumeTarget, keyslot: int, remaining: Secret) -> None:
    """Wipe `keyslot`. `remaining` must open another keyslot: that both authorises the removal
    and proves the volume stays openable. The last usable keyslot is never removed."""
    header = cryptsetup.read_header(target.device)
    if keyslot not in {s.id for s in header.keyslots}:
        raise KeyslotError(
            f"{target.label} has no keyslot {keyslot}",
            f"'imgvaultctl volume key list {target.label}' shows its keyslots",
        )
    usable = usable_keyslots(header)
    if usable == [keyslot]:
        raise KeyslotError(
            f"keyslot {keyslot} is the last usable keyslot of {target.label}: removing it "
            "would lose the data for good",
            "add another passphrase first ('imgvaultctl volume key add')",
        )
    opened = cryptsetup.test_key(target.device, remaining)
    if opened == keyslot:
        raise KeyslotError(
            f"the passphrase given opens keyslot {keyslot}, the one being removed",
            "authorise the removal with the passphrase of a keyslot you keep",
        )
    cryptsetup.kill_slot(target.device, keyslot, remaining)
    _record_change(target, (keyslot, None))


def check_key(target: VolumeTarget, key: Secret) -> int:
    """The keyslot `key` opens (WrongKeyError if none): asked before a new passphrase is
    typed, so a mistyped current one is caught first."""
    return cryptsetup.test_key(target.device, key)


@dataclass
class RecoveryRotation:
    keyslot: int
    replaced: int | None  # the old recovery keyslot, now wiped
    key: Secret | None  # only when it is to be shown


def new_recovery_key(
    target: VolumeTarget, existing: Secret, output: RecoveryTarget
) -> RecoveryRotation:
    """Make a fresh recovery key (first one, or rotation after a leak or a holder leaving):
    add its keyslot, then wipe the old recovery keyslot, authorised by `existing`."""
    record = target.record
    if record is None:
        raise KeyslotError(
            f"{target.label} is not registered: imgvault does not know its recovery keyslot",
            "recovery keys are managed for volumes made with 'imgvaultctl volume format'",
        )
    cryptsetup.test_key(target.device, existing)
    output.check()
    key = output.issue()
    try:
        slot = cryptsetup.add_key(target.device, existing, key, pbkdf=_pbkdf_for(target))
    except BaseException:
        output.discard(key)
        raise
    old = record.recovery_keyslot
    present = {s.id for s in cryptsetup.read_header(target.device).keyslots}
    update_record(record.name, recovery_keyslot=slot, last_key_change=utc_now())
    if old is not None and old != slot and old in present:
        # Authorised by the new key: `existing` may be the old recovery key itself.
        cryptsetup.kill_slot(target.device, old, key)
    return RecoveryRotation(
        slot, old if old in present else None, key if output.kind == "show" else None
    )
