"""`imgvaultctl volume reencrypt`: change the cipher profile or rotate the volume key."""

import argparse
import json
import os
import re
import signal
import sys
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime

from imgvault.cli.commands import Subparsers, add_command
from imgvault.cli.interaction import PROMPT_TRIES, ask_passphrase, read_key_file
from imgvault.cli.output import human_size, print_json
from imgvault.errors import ImgvaultError
from imgvault.policy import load_policy
from imgvault.secret import Secret
from imgvault.volumes import cryptsetup
from imgvault.volumes.errors import WrongKeyError
from imgvault.volumes.jobs import Job, job_path, running_job, save_job
from imgvault.volumes.luks import LuksHeader
from imgvault.volumes.reencrypt import (
    Progress,
    ProgressCallback,
    Target,
    active_keyslots,
    online_mapping_name,
    reencrypt_volume,
    resume_reencryption,
)
from imgvault.volumes.resolve import VolumeTarget, resolve_volume

HELP = """\
Re-encrypt a LUKS2 volume in place, with its data kept:
  --profile aes-256-xts   move to another cipher profile of the policy (e.g. AES-128-XTS to
                          AES-256-XTS); a new volume key is made as well
  --rotate-key            new volume key, same cipher and key size (after a suspected key
                          compromise, or by policy)
  --resume                finish a re-encryption that was cut off (crash, kill, reboot);
                          'imgvaultctl status' flags those

With the volume open (and mounted) it runs online while the file system stays in use; closed,
offline. cryptsetup keeps its progress in the LUKS header, so an interruption loses nothing:
run --resume. Every keyslot is re-wrapped, so the passphrase of each is needed (the recovery
key too): give one --key-file per keyslot, or type them when asked. Afterwards the registry
records the key change and a fresh header backup is written (older backups no longer match).

Long runs: --background detaches and follows progress in a job file
(STATE_DIR/jobs/ID.json, shown by 'imgvaultctl status'); --progress-json prints one JSON
object a line (done_bytes, total_bytes, percent, speed_bytes_per_s, eta_ms, elapsed_ms).

examples:
  imgvaultctl volume reencrypt pacs-store --profile aes-256-xts --background
  imgvaultctl volume reencrypt pacs-store --rotate-key --key-file /root/pacs.key \\
      --key-file /root/pacs-recovery.key
  imgvaultctl volume reencrypt pacs-store --resume
"""

Work = Callable[[ProgressCallback], object]


def _collect_keys(args: argparse.Namespace, target: VolumeTarget, slots: list[int]) -> list[Secret]:
    """Key files as given, else a prompted passphrase per keyslot (3 tries each)."""
    if args.key_file:
        return [read_key_file(path) for path in args.key_file]
    opened: dict[int, Secret] = {}
    for slot in slots:
        if slot in opened:
            continue
        for attempt in range(1, PROMPT_TRIES + 1):
            key = ask_passphrase(f"Passphrase for keyslot {slot} of {target.label}: ")
            found = _opens(target.device, key)
            if found is not None:
                opened.setdefault(found, key)
                break
            key.wipe()
            print(f"wrong passphrase ({attempt}/{PROMPT_TRIES})", file=sys.stderr)
        else:
            raise WrongKeyError(
                f"no keyslot of {target.device} opens with the passphrases typed "
                f"({PROMPT_TRIES} tries)",
                "check the keyboard layout; if a passphrase is lost, remove its keyslot with "
                "the recovery key first",
            )
    return list(opened.values())


def _opens(device: str, key: Secret) -> int | None:
    try:
        return cryptsetup.test_key(device, key)
    except WrongKeyError:
        return None


def _progress_printer(args: argparse.Namespace, job: Job) -> ProgressCallback:
    def report(progress: Progress) -> None:
        job.progress = progress.to_json()
        save_job(job)
        if args.progress_json:
            print(json.dumps(progress.to_json()), flush=True)
        elif sys.stderr.isatty():
            print(
                f"\rre-encrypting {job.volume}: {progress.percent:5.1f}% of "
                f"{human_size(progress.total_bytes)}, {human_size(progress.speed_bytes_per_s)}/s, "
                f"{progress.eta_ms // 1000} s left ",
                end="",
                file=sys.stderr,
                flush=True,
            )

    return report


def _run_job(args: argparse.Namespace, target: VolumeTarget, job: Job, work: Work) -> int:
    # SIGTERM (kill, systemd stopping): stop cryptsetup at a safe point, then exit 143.
    signal.signal(signal.SIGTERM, lambda _signo, _frame: sys.exit(128 + signal.SIGTERM))
    try:
        work(_progress_printer(args, job))
    except ImgvaultError as error:
        job.state, job.error = "failed", error.message
        save_job(job)
        raise
    except BaseException:
        job.state, job.error = "failed", "stopped by a signal: run --resume to finish"
        save_job(job)
        raise
    if sys.stderr.isatty() and not args.progress_json:
        print(file=sys.stderr)  # end the progress line
    job.state = "finished"
    save_job(job)
    header = cryptsetup.read_header(target.device)
    if args.json:
        print_json({"job": job.to_json(), "changed": True, "encryption": header.to_json()})
    elif not args.progress_json:
        print(f"{target.label}: re-encryption finished: {header.cipher_description}")
    return 0


def _detach() -> bool:
    """Fork into a session of its own with stdio on /dev/null; True in the child."""
    if os.fork() != 0:
        return False
    os.setsid()
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    return True


def _nothing_to_do(args: argparse.Namespace, header: LuksHeader, message: str) -> int:
    if args.json:
        print_json({"job": None, "changed": False, "encryption": header.to_json()})
    else:
        print(message)
    return 0


def _refuse_if_running(target: VolumeTarget, uuid: str) -> None:
    busy = running_job(uuid)
    if busy is not None:
        percent = (busy.progress or {}).get("percent", 0.0)
        raise ImgvaultError(
            f"{target.label} is being re-encrypted right now ({busy.description}, pid "
            f"{busy.pid}, {percent}%)",
            f"follow it with 'imgvaultctl status'; 'kill {busy.pid}' stops it at a safe point "
            "(then --resume)",
        )


def run_reencrypt(args: argparse.Namespace) -> int:
    target = resolve_volume(args.volume)
    header = cryptsetup.read_header(target.device)
    policy = load_policy().volumes
    _refuse_if_running(target, header.uuid)
    if args.resume:
        if header.reencryption is None:
            return _nothing_to_do(args, header, f"{target.label}: no re-encryption to resume")
        keys = _collect_keys(args, target, active_keyslots(header)[:1])
        description = "resume re-encryption"

        def work(report: ProgressCallback) -> object:
            return resume_reencryption(target.device, keys[0], target.record, report)

    else:
        if header.reencryption is not None:
            raise ImgvaultError(
                f"{target.label} has an unfinished re-encryption",
                f"finish it first: imgvaultctl volume reencrypt --resume {args.volume}",
            )
        if args.rotate_key:
            profile = policy.profile(target.record.profile if target.record else None)
            plan = replace(
                Target.rotation(header, profile.pbkdf_setting()), hotzone_mib=args.hotzone_size
            )
            description = f"rotate the volume key ({header.cipher_description})"
        else:
            plan = replace(
                Target.from_profile(policy.profile(args.profile)), hotzone_mib=args.hotzone_size
            )
            if (plan.cipher, plan.key_bits) == (header.cipher, header.key_bits):
                return _nothing_to_do(
                    args,
                    header,
                    f"{target.label} is already {header.cipher_description}: nothing to do "
                    "(--rotate-key makes a new volume key)",
                )
            description = f"re-encrypt to {args.profile} ({plan.cipher}, {plan.key_bits}-bit key)"
        keys = _collect_keys(args, target, active_keyslots(header))

        def work(report: ProgressCallback) -> object:
            return reencrypt_volume(target.device, keys, plan, target.record, report)

    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    job = Job(
        id=f"reencrypt-{re.sub(r'[^A-Za-z0-9_.-]', '_', target.label)}-{stamp}",
        kind="reencrypt",
        volume=target.label,
        device=target.device,
        uuid=header.uuid,
        description=f"{description}, {'online' if online_mapping_name(header) else 'offline'}",
        pid=os.getpid(),
    )
    try:
        if args.background:
            if not _detach():
                print(f"{target.label}: {job.description}: started in the background")
                print(f"follow it with 'imgvaultctl status' or in {job_path(job.id)}")
                return 0
            job.pid = os.getpid()
            save_job(job)
            try:
                _run_job(args, target, job, work)
            except BaseException:
                os._exit(1)
            os._exit(0)
        save_job(job)
        return _run_job(args, target, job, work)
    finally:
        for key in keys:
            key.wipe()


def register(subparsers: Subparsers) -> None:
    parser = add_command(
        subparsers,
        "reencrypt",
        help="change the cipher profile or rotate the volume key (in place, resumable)",
        description=HELP,
    )
    parser.add_argument("volume", metavar="NAME|DEVICE", help="registered name or device path")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--profile", help="cipher profile of the policy to move to")
    what.add_argument("--rotate-key", action="store_true", help="new volume key, same cipher")
    what.add_argument("--resume", action="store_true", help="finish an interrupted run")
    parser.add_argument(
        "--key-file",
        action="append",
        metavar="PATH",
        help="passphrase/key file, once per keyslot ('-' = stdin); default: ask on the terminal",
    )
    parser.add_argument("--background", action="store_true", help="detach; progress in a job file")
    parser.add_argument(
        "--progress-json", action="store_true", help="print progress as JSON lines on stdout"
    )
    parser.add_argument(
        "--hotzone-size",
        type=int,
        metavar="MIB",
        help="re-encrypt at most MIB per step (default: cryptsetup's, up to the whole device): "
        "smaller steps pause I/O more briefly online and let SIGTERM stop sooner",
    )
    parser.add_argument("--json", action="store_true", help="print a JSON report at the end")
    parser.set_defaults(handler=run_reencrypt)
