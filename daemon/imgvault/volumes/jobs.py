"""Long-running volume work (re-encryption) as jobs that outlive the command that started them.

Each job is one JSON file in `state_dir()/jobs/`, rewritten atomically on every progress report,
so `imgvaultctl status` (or any reader) sees the job's state without talking to the process.
A job file that says "running" whose process is gone was cut off (SIGKILL, crash, reboot).
"""

import json
import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from imgvault.paths import state_dir
from imgvault.system.atomic import write_atomic
from imgvault.volumes.resolve import utc_now


@dataclass
class Job:
    id: str
    kind: str  # "reencrypt"
    volume: str
    device: str
    uuid: str
    description: str
    pid: int
    state: str = "running"  # running, finished, failed
    started: str = field(default_factory=utc_now)
    updated: str = field(default_factory=utc_now)
    progress: dict[str, Any] | None = None
    error: str | None = None

    @property
    def alive(self) -> bool:
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            return True
        return True

    @property
    def effective_state(self) -> str:
        """ "interrupted" for a job whose process died without saying so."""
        return "interrupted" if self.state == "running" and not self.alive else self.state

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "state": self.effective_state}


def jobs_dir() -> Path:
    return state_dir() / "jobs"


def job_path(job_id: str) -> Path:
    return jobs_dir() / f"{job_id}.json"


def save_job(job: Job) -> None:
    job.updated = utc_now()
    jobs_dir().mkdir(mode=0o700, parents=True, exist_ok=True)
    write_atomic(job_path(job.id), (json.dumps(asdict(job), indent=2) + "\n").encode())


def load_jobs() -> list[Job]:
    """Every job on record, oldest first; unreadable files are skipped (a job file is a
    report, never the source of truth: the LUKS header is)."""
    if not jobs_dir().is_dir():
        return []
    known = {f.name for f in fields(Job)}
    jobs = []
    for path in sorted(jobs_dir().glob("*.json")):
        try:
            document = json.loads(path.read_text())
            jobs.append(Job(**{k: v for k, v in document.items() if k in known}))
        except (OSError, ValueError, TypeError):
            continue
    return sorted(jobs, key=lambda job: job.started)


def running_job(uuid: str) -> Job | None:
    """The job still at work on the volume `uuid`, if any."""
    return next((j for j in load_jobs() if j.uuid == uuid and j.effective_state == "running"), None)
