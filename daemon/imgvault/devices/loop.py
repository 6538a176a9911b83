"""Loop devices over image files: for the demo store, the test tiers and trying imgvault
without a spare disk. Wraps `losetup`."""

from dataclasses import dataclass
from pathlib import Path

from imgvault.errors import ImgvaultError
from imgvault.system.run import run


class LoopError(ImgvaultError):
    pass


@dataclass(frozen=True)
class LoopDevice:
    path: Path
    backing_file: Path


def attach_loop(backing_file: Path) -> LoopDevice:
    """Attach `backing_file` to the first free loop device."""
    result = run(["losetup", "--find", "--show", "--", str(backing_file)])
    if not result.ok:
        raise LoopError(
            f"cannot attach {backing_file} to a loop device: {result.stderr.strip()}",
            "run as root; check that /dev/loop-control exists and a loop device is free "
            "(losetup --list)",
        )
    return LoopDevice(path=Path(result.stdout.strip()), backing_file=backing_file)


def detach_loop(loop: LoopDevice) -> None:
    result = run(["losetup", "--detach", str(loop.path)])
    if not result.ok:
        raise LoopError(
            f"cannot detach {loop.path}: {result.stderr.strip()}",
            "close any mapping or mount on it first (imgvaultctl status shows them)",
        )
