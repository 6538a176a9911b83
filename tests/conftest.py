"""Test tiers (see README, "Tests"): unmarked tests are unit tests and need nothing special;
`loop` tests need root, cryptsetup and loop devices; `vm` tests need device-mapper and run only
inside the User-Mode Linux guest booted by scripts/vm-test; `qemu` tests need emulated NVMe and
SATA controllers and run only inside the QEMU guest booted by scripts/qemu-test. A tier whose
needs are missing fails, never skips, so CI cannot pass on a tier that did not run."""

import os
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

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
