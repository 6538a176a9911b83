"""Test tiers (see README, "Tests"): unmarked tests are unit tests and need nothing special;
`loop` tests need root, cryptsetup and loop devices (some mount a small tmpfs); `vm` tests
need device-mapper and run only inside the User-Mode Linux guest booted by scripts/vm-test;
`qemu` tests need emulated NVMe and SATA controllers and run only inside the QEMU guest
booted by scripts/qemu-test. A tier whose needs are missing fails, never skips, so CI cannot
pass on a tier that did not run."""

import json
import os
import pty
import re
import select
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from imgvault.devices.loop import LoopDevice, attach_loop, detach_loop
from imgvault.volumes.luks import Pbkdf

IN_VM = os.environ.get("IMGVAULT_IN_VM") == "1"
IN_QEMU = os.environ.get("IMGVAULT_IN_QEMU") == "1"


def _loop_tier_problems() -> list[str]:
    problems = []
    if os.geteuid() != 0:
        problems.append("not root")
    for tool in ("cryptsetup", "losetup", "blkid"):
        if shutil.which(tool, path="/usr/sbin:/usr/bin:/sbin:/bin") is None:
            problems.append(f"{tool} missing")
    if not Path("/dev/loop-control").exists():
        problems.append("no /dev/loop-control")
    return problems


def pytest_runtest_setup(item: pytest.Item) -> None:
    if item.get_closest_marker("vm") and not IN_VM:
        pytest.fail(
            "vm tier: this test needs device-mapper and runs only inside the UML guest: "
            "scripts/vm-test -m vm (scripts/run-tests does this)",
            pytrace=False,
        )
    if item.get_closest_marker("qemu") and not (IN_QEMU and os.geteuid() == 0):
        pytest.fail(
            "qemu tier: this test needs emulated NVMe and SATA disks and root; it runs only "
            "inside the QEMU guest: scripts/qemu-test -m qemu (scripts/run-tests does this)",
            pytrace=False,
        )
    if item.get_closest_marker("loop") or item.get_closest_marker("vm"):
        problems = _loop_tier_problems()
        if problems:
            pytest.fail(
                f"loop tier cannot run: {', '.join(problems)}; run scripts/bootstrap as root",
                pytrace=False,
            )


@pytest.fixture
def fast_pbkdf() -> Pbkdf:
    """Cheap key derivation for tests only; production keeps argon2id and its strong defaults."""
    return Pbkdf(kind="pbkdf2", iterations=1000)


@pytest.fixture
def make_loop(tmp_path: Path) -> Iterator[Callable[..., LoopDevice]]:
    """Attach sparse backing files as loop devices; all are detached at teardown."""
    attached: list[LoopDevice] = []

    def make(size_mib: int = 64, name: str = "disk") -> LoopDevice:
        backing = tmp_path / f"{name}{len(attached)}.img"
        with backing.open("wb") as f:
            f.truncate(size_mib * 1024 * 1024)
        loop = attach_loop(backing)
        attached.append(loop)
        return loop

    yield make
    for loop in reversed(attached):
        detach_loop(loop)


# Cheap argon2id for the volume commands under test (the shipped profiles keep 1 GiB and a
# 2-second benchmark); pbkdf_iterations skips the benchmark.
_TEST_PBKDF = 'pbkdf = "argon2id"\npbkdf_iterations = 4\npbkdf_memory_kib = 1024\n'


@dataclass
class VolumeEnv:
    """A private state and config directory with a cheap-PBKDF test policy, and a way to run
    `imgvaultctl` for real (a child process) inside it."""

    root: Path
    env: dict[str, str]

    @property
    def state(self) -> Path:
        return self.root / "state"

    def registry(self) -> dict[str, Any]:
        document: dict[str, Any] = json.loads((self.state / "volumes.json").read_text())
        return document["volumes"]

    def key_file(self, name: str, content: bytes) -> Path:
        path = self.root / name
        path.write_bytes(content)
        path.chmod(0o600)
        return path

    def ctl(self, *args: str, stdin: bytes | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "imgvault.cli.main", *args],
            input=stdin.decode() if stdin is not None else None,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            env=self.env,
            check=False,
        )

    def on_terminal(self, args: list[str], answers: list[bytes]) -> tuple[int, str]:
        """Run imgvaultctl with a pseudo-terminal as its controlling terminal, typing
        `answers` at each prompt; its exit code and everything it printed."""
        pid, fd = pty.fork()
        if pid == 0:  # child
            os.execve(  # noqa: S606  (the test is the terminal)
                sys.executable, [sys.executable, "-m", "imgvault.cli.main", *args], self.env
            )
        output = b""
        pending = list(answers)
        while True:
            ready, _, _ = select.select([fd], [], [], 30)
            if not ready:
                break
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
            if pending and chunk.rstrip().endswith(b":"):
                os.write(fd, pending.pop(0) + b"\n")
        _, status = os.waitpid(pid, 0)
        return os.waitstatus_to_exitcode(status), output.decode(errors="replace")


@pytest.fixture
def volume_env(tmp_path: Path) -> VolumeEnv:
    root = tmp_path / "imgvault"
    (root / "config").mkdir(parents=True)
    shipped = Path(__file__).resolve().parents[1] / "policies" / "default.toml"
    policy = re.sub(
        r'^pbkdf = "argon2id"\npbkdf_memory_kib = \d+[^\n]*\n',
        _TEST_PBKDF,
        shipped.read_text(),
        flags=re.M,
    )
    assert len(re.findall(r"^pbkdf_iterations = 4$", policy, flags=re.M)) == 2
    (root / "config" / "policy.toml").write_text(policy)
    env = dict(os.environ)
    env.update(IMGVAULT_STATE_DIR=str(root / "state"), IMGVAULT_CONFIG_DIR=str(root / "config"))
    return VolumeEnv(root, env)


@pytest.fixture
def volume_env_here(volume_env: VolumeEnv, monkeypatch: pytest.MonkeyPatch) -> VolumeEnv:
    """`volume_env` for the engine calls the test makes itself, as well as for `ctl`."""
    for name in ("IMGVAULT_STATE_DIR", "IMGVAULT_CONFIG_DIR"):
        monkeypatch.setenv(name, volume_env.env[name])
    return volume_env


@pytest.fixture
def luks1_loop(make_loop: Callable[..., LoopDevice]) -> LoopDevice:
    """A 32 MiB loop device with a LUKS1 header (passphrase "pw", cheap PBKDF2)."""
    loop = make_loop(32)
    subprocess.run(
        ["cryptsetup", "luksFormat", "--batch-mode", "--type", "luks1", "--iter-time", "10",
         "--key-file=-", str(loop.path)],
        input=b"pw", check=True, capture_output=True,
    )  # fmt: skip
    return loop
