"""Compliance of a LUKS volume with the admin's policy, as typed findings with the fix.

The header says how a volume is encrypted; the registry says what the header cannot (which
keyslot is the recovery key, when keys last changed, where the header backup is); the job
files say whether a re-encryption is running right now. A finding never changes anything: it
names the problem, how bad it is and the command that fixes it.
"""

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from imgvault.policy import VolumePolicy, load_policy
from imgvault.volumes.jobs import Job, load_jobs
from imgvault.volumes.luks import LuksHeader, describe_cipher
from imgvault.volumes.registry import VolumeRecord, load_registry

ERROR, WARNING, INFO = "error", "warning", "info"


@dataclass(frozen=True)
class Finding:
    code: str
    severity: str  # error: breaks the policy; warning: a risk the policy asks to remove; info
    message: str
    hint: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def check_volume(
    header: LuksHeader,
    record: VolumeRecord | None,
    policy: VolumePolicy,
    job: Job | None = None,
    device: str | None = None,
) -> list[Finding]:
    """Every way the volume with `header` (and registry `record`) breaks `policy`. Fixes name
    the volume as commands accept it: its registered name, else its device path."""
    name = record.name if record else (device or header.uuid)
    return [
        *_format_findings(header, name, policy),
        *_keyslot_findings(header, record, name, policy),
        *_backup_findings(record, name),
        *_reencryption_findings(header, name, job),
    ]


def _format_findings(header: LuksHeader, name: str, policy: VolumePolicy) -> list[Finding]:
    findings = []
    if header.version == 1 and not policy.allow_luks1:
        findings.append(
            Finding(
                "luks1",
                ERROR,
                "LUKS1 header: no Argon2, no metadata checksums, no crash-safe re-encryption",
                "back up the header, close the volume, then 'cryptsetup convert --type luks2 "
                "DEVICE'",
            )
        )
    if header.key_bits < policy.min_key_bits:
        findings.append(
            Finding(
                "weak-cipher",
                ERROR,
                f"{describe_cipher(header.cipher, header.key_bits)} is below the policy's "
                f"{policy.min_key_bits}-bit minimum",
                f"imgvaultctl volume reencrypt {name} --profile {policy.default_profile}",
            )
        )
    allowed = {profile.cipher for profile in policy.profiles.values()}
    if header.cipher and header.cipher not in allowed:
        findings.append(
            Finding(
                "cipher-not-in-policy",
                WARNING,
                f"cipher {header.cipher} is not one of the policy's profiles "
                f"({', '.join(sorted(allowed))})",
                f"imgvaultctl volume reencrypt {name} --profile {policy.default_profile}",
            )
        )
    return findings


def _keyslot_findings(
    header: LuksHeader, record: VolumeRecord | None, name: str, policy: VolumePolicy
) -> list[Finding]:
    findings = []
    weak = [
        slot.id
        for slot in header.keyslots
        if slot.pbkdf is not None
        and slot.pbkdf.kind == "pbkdf2"
        and (slot.pbkdf.iterations or 0) < policy.min_pbkdf2_iterations
    ]
    if weak:
        slots = ", ".join(str(slot) for slot in weak)
        findings.append(
            Finding(
                "pbkdf2-iterations",
                ERROR,
                f"keyslot(s) {slots} use PBKDF2 with fewer than {policy.min_pbkdf2_iterations} "
                "iterations: cheap to brute-force",
                f"convert each to argon2id: 'cryptsetup luksConvertKey --pbkdf argon2id "
                f"--key-slot N DEVICE' (or change its passphrase: imgvaultctl volume key change "
                f"{name})",
            )
        )
    usable = [slot for slot in header.keyslots if slot.type in ("luks1", "luks2")]
    if len(usable) < policy.min_keyslots:
        findings.append(
            Finding(
                "few-keyslots",
                WARNING,
                f"{len(usable)} keyslot(s), the policy wants at least {policy.min_keyslots}: "
                "one lost passphrase would lose the data",
                f"add a passphrase: imgvaultctl volume key add {name}",
            )
        )
    recovery = record.recovery_keyslot if record else None
    if policy.require_recovery_key and recovery not in {slot.id for slot in usable}:
        findings.append(
            Finding(
                "no-recovery-key",
                WARNING,
                "no recovery key on record"
                + ("" if record else " (the volume is not in imgvault's registry)"),
                f"add a passphrase kept offline as the recovery key: imgvaultctl volume key "
                f"add {name} (volume format makes one)",
            )
        )
    return findings


def _backup_findings(record: VolumeRecord | None, name: str) -> list[Finding]:
    fix = f"imgvaultctl volume header backup {name}"
    if record is None or not record.header_backup or not record.header_backup_time:
        return [Finding("no-header-backup", WARNING, "no header backup on record", fix)]
    if not Path(record.header_backup).is_file():
        return [
            Finding(
                "header-backup-missing",
                WARNING,
                f"the recorded header backup {record.header_backup} is gone",
                fix,
            )
        ]
    if record.last_key_change and _instant(record.header_backup_time) < _instant(
        record.last_key_change
    ):
        return [
            Finding(
                "header-backup-stale",
                WARNING,
                f"the header backup ({record.header_backup_time}) is older than the last key "
                f"change ({record.last_key_change})",
                fix,
            )
        ]
    return []


def _instant(timestamp: str) -> datetime:
    """Registry times are ISO 8601 UTC, written as ...Z or ...+00:00."""
    return datetime.fromisoformat(timestamp)


def _reencryption_findings(header: LuksHeader, name: str, job: Job | None) -> list[Finding]:
    if header.reencryption is None:
        return []
    if job is not None and job.effective_state == "running":
        percent = (job.progress or {}).get("percent", 0.0)
        return [
            Finding(
                "reencrypt-running",
                INFO,
                f"re-encryption in progress: {percent}% ({job.description}, pid {job.pid})",
                "nothing to do; it may be interrupted safely and resumed",
            )
        ]
    return [
        Finding(
            "reencrypt-interrupted",
            ERROR,
            f"re-encryption was interrupted ({header.reencryption.mode}, "
            f"{header.reencryption.direction}); part of the data uses the old key",
            f"imgvaultctl volume reencrypt {name} --resume",
        )
    ]


class ComplianceCheck:
    """Policy, registry and jobs read once, for checking every volume of a `status` run."""

    def __init__(self) -> None:
        self.policy = load_policy().volumes
        self.records = {record.uuid: record for record in load_registry().values()}
        self.jobs = {job.uuid: job for job in load_jobs()}  # the latest job per volume

    def check(self, header: LuksHeader, device: str) -> list[Finding]:
        record, job = self.records.get(header.uuid), self.jobs.get(header.uuid)
        return check_volume(header, record, self.policy, job, device)


def format_findings(findings: dict[str, list[Finding]]) -> str:
    """The "compliance" section printed under the `status` table."""
    lines = ["", "compliance:"]
    for device, device_findings in findings.items():
        for finding in device_findings:
            lines.append(
                f"  {device}: {finding.severity.upper()} {finding.code}: {finding.message}"
            )
            lines.append(f"    fix: {finding.hint}")
    if len(lines) == 2:
        lines.append("  every LUKS volume meets the policy" if findings else "  no LUKS volumes")
    return "\n".join(lines)
