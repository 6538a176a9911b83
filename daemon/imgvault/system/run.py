"""The one place where imgvault starts an external program.

Every tool runs from an argument list (never a shell), in the C locale so its messages can be
parsed, with secrets passed only through stdin or an inherited pipe: never argv or environment.
"""

import os
import shutil
import subprocess
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from imgvault.errors import ImgvaultError
from imgvault.secret import Secret

# Debian package that ships each tool, for the "install it" hint.
TOOL_PACKAGES = {
    "cryptsetup": "cryptsetup-bin",
    "losetup": "util-linux",
    "blkid": "util-linux",
    "wipefs": "util-linux",
    "mkfs.ext4": "e2fsprogs",
    "mount": "mount",
    "umount": "mount",
    "smartctl": "smartmontools",
    "openssl": "openssl",
    "systemd-escape": "systemd",
}

# Secrets fed through a pipe are written before the child starts; a pipe holds 64 KiB.
_PIPE_CAPACITY = 65536


class ToolMissingError(ImgvaultError):
    exit_code = 69  # EX_UNAVAILABLE


class ToolFailedError(ImgvaultError):
    """A tool exited non-zero; callers usually map this to a more precise error."""

    def __init__(self, result: "CommandResult") -> None:
        detail = result.stderr.strip() or result.stdout.strip() or "no message"
        super().__init__(f"{result.argv[0]} exited with {result.returncode}: {detail}")
        self.result = result


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.returncode == 0


@dataclass
class SecretFd:
    """A secret handed to the child as `/dev/fd/N` (for tools that take a second key file)."""

    secret: Secret
    _read_fd: int = field(default=-1, init=False)

    def open(self) -> str:
        value = self.secret.reveal()
        if len(value) >= _PIPE_CAPACITY:
            raise ImgvaultError("key file too large (64 KiB at most)")
        read_fd, write_fd = os.pipe()
        try:
            os.write(write_fd, value)
        finally:
            os.close(write_fd)
        self._read_fd = read_fd
        return f"/dev/fd/{read_fd}"

    def close(self) -> None:
        if self._read_fd >= 0:
            os.close(self._read_fd)
            self._read_fd = -1


def which(tool: str) -> str:
    """The tool's path, or a ToolMissingError naming the Debian package to install."""
    path = shutil.which(tool, path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if path is None:
        package = TOOL_PACKAGES.get(tool, tool)
        raise ToolMissingError(
            f"{tool} is not installed",
            f"install it: apt-get install {package} (scripts/bootstrap installs everything)",
        )
    return path


def _program_and_env(
    argv: Sequence[str], env: Mapping[str, str] | None
) -> tuple[str, dict[str, str]]:
    """The tool's full path and a minimal C-locale environment for it."""
    program = which(argv[0])
    child_env = {"PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")}
    child_env.update(env or {})
    child_env["LC_ALL"] = "C"
    return program, child_env


def run(
    argv: Sequence[str],
    *,
    stdin_secret: Secret | None = None,
    fd_secrets: Sequence[SecretFd] = (),
    timeout: float | None = None,
    check: bool = False,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Run `argv` and capture its output as text.

    `stdin_secret` is written to the child's stdin; each `fd_secrets` entry must already be
    `open()`ed and its `/dev/fd/N` path placed in argv by the caller.
    """
    try:
        program, child_env = _program_and_env(argv, env)
        proc = subprocess.run(
            [program, *argv[1:]],
            input=stdin_secret.reveal() if stdin_secret is not None else None,
            stdin=None if stdin_secret is not None else subprocess.DEVNULL,
            capture_output=True,
            pass_fds=tuple(s._read_fd for s in fd_secrets if s._read_fd >= 0),
            env=child_env,
            timeout=timeout,
            check=False,
        )
    finally:
        # Our read ends of the secret pipes: the child has its own copies, or never started.
        for secret_fd in fd_secrets:
            secret_fd.close()
    result = CommandResult(
        argv=tuple(argv),
        returncode=proc.returncode,
        stdout=proc.stdout.decode(errors="replace"),
        stderr=proc.stderr.decode(errors="replace"),
    )
    if check and not result.ok:
        raise ToolFailedError(result)
    return result


def run_streaming(
    argv: Sequence[str],
    on_line: Callable[[str], None],
    *,
    stdin_secret: Secret | None = None,
    env: Mapping[str, str] | None = None,
) -> CommandResult:
    """Like `run`, for long-running tools that report progress: `on_line` gets each stdout
    line as it is printed. stderr is collected meanwhile, so a chatty tool cannot block. If the
    caller is interrupted, the tool gets SIGTERM and is waited for."""
    program, child_env = _program_and_env(argv, env)
    proc = subprocess.Popen(
        [program, *argv[1:]],
        stdin=subprocess.PIPE if stdin_secret is not None else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=child_env,
    )
    stdout, stderr = proc.stdout, proc.stderr
    if stdout is None or stderr is None:  # pragma: no cover (both are PIPE)
        raise ImgvaultError(f"cannot read the output of {argv[0]}")
    stderr_chunks: list[bytes] = []
    drain = threading.Thread(target=lambda: stderr_chunks.append(stderr.read()), daemon=True)
    drain.start()
    if proc.stdin is not None and stdin_secret is not None:
        try:
            proc.stdin.write(stdin_secret.reveal())
        except BrokenPipeError:
            pass  # it exited early; its stderr says why
        finally:
            proc.stdin.close()
    stdout_lines = []
    try:
        for raw in stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            stdout_lines.append(line)
            on_line(line)
        proc.wait()
    except BaseException:
        # We are being stopped (SIGTERM turned into SystemExit, Ctrl-C): stop the tool the way
        # it is meant to be stopped (cryptsetup reencrypt finishes its step and records where
        # it is), wait for it, then go on stopping.
        proc.terminate()
        proc.wait()
        raise
    drain.join()
    return CommandResult(
        argv=tuple(argv),
        returncode=proc.returncode,
        stdout="\n".join(stdout_lines),
        stderr=b"".join(stderr_chunks).decode(errors="replace"),
    )
