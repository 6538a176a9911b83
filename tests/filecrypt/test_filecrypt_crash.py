"""Crash safety: SIGKILL an in-place encrypt or rewrap at random moments, 240 times.

The child is forked from the test (modules already imported), so each trial costs
milliseconds and the kill lands anywhere in the work: while writing the temporary file,
between fsync and rename, after the rename, between files. Afterwards every file must be its
original bytes or a valid encryption of them, and `recover` must leave no temporary file.
This proves process-crash safety; power loss (the fsync order) needs a VM and is not tested.
"""

import os
import random
import signal
import time
from pathlib import Path

from fc_helpers import Party

from imgvault.filecrypt import inplace, stream
from imgvault.filecrypt.batch import Batches
from imgvault.filecrypt.errors import NoMatchingRecipientError, NotEncryptedError

TRIALS = 240
FILES = 6


def _child(paths: list[Path], work: str, pki: dict[str, Party]) -> None:
    """encrypt: one file after the other (as imgvaultd does); encrypt-batch and rewrap: as the
    CLI runs them, four files in flight and the directory fsynced at the end. All with a batch
    key, as both write files."""
    code = 1
    batches = Batches()
    try:
        if work == "encrypt":
            for path in paths:
                inplace.encrypt_file(path, [pki["alice"].recipient], batches=batches)
        else:

            def operation(path: Path, dirs: set[str]) -> inplace.Outcome:
                if work == "rewrap":
                    key, new = pki["alice"].as_key, [pki["bob"].recipient]
                    return inplace.rewrap_file(path, key, new, batches=batches, dirs_to_sync=dirs)
                return inplace.encrypt_file(
                    path, [pki["alice"].recipient], batches=batches, dirs_to_sync=dirs
                )

            for _, _, error in inplace.run_batch(paths, operation, jobs=4):
                assert error is None
        code = 0
    finally:
        os._exit(code)


def _run(paths: list[Path], work: str, pki: dict[str, Party], delay: float | None) -> None:
    pid = os.fork()
    if pid == 0:
        _child(paths, work, pki)
    if delay is not None:
        time.sleep(delay)
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert delay is not None or os.waitstatus_to_exitcode(status) == 0


def _state(path: Path, original: bytes, pki: dict[str, Party]) -> str:
    data = path.read_bytes()
    if data == original:
        return "original"
    for name in ("alice", "bob"):
        with path.open("rb") as f:
            sink = _Sink()
            try:
                stream.decrypt(f, len(data), str(path), pki[name].as_key, sink)  # type: ignore[arg-type]
            except NotEncryptedError:
                raise AssertionError(f"{path}: neither original nor encrypted") from None
            except NoMatchingRecipientError:  # not this recipient: try the next
                continue
        assert bytes(sink.data) == original, f"{path}: decrypts to something else"
        return f"encrypted-for-{name}"
    raise AssertionError(f"{path}: an encryption no recipient can open")


class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def write(self, b: bytes) -> int:
        self.data += b
        return len(b)


def test_sigkill_at_random_points_never_loses_a_file(pki: dict[str, Party], tmp_path: Path) -> None:
    rng = random.Random(2026)  # noqa: S311  # reproducible kill points, not keys
    store = tmp_path / "store"
    store.mkdir()
    paths = [store / f"img{i}.dcm" for i in range(FILES)]
    originals = [rng.randbytes(rng.choice([0, 1, 4096, 100_000, 700_000])) for _ in paths]

    def reset(encrypted: bool) -> None:
        for path, data in zip(paths, originals, strict=True):
            path.write_bytes(data)
        if encrypted:
            _run(paths, "encrypt", pki, None)

    start = time.monotonic()
    reset(False)
    _run(paths, "encrypt", pki, None)
    full = time.monotonic() - start
    seen: dict[str, int] = {}
    removed = 0
    for trial in range(TRIALS):
        work = ("encrypt", "encrypt-batch", "rewrap")[trial % 3]
        reset(encrypted=work == "rewrap")
        _run(paths, work, pki, rng.uniform(0, full * 1.1))
        removed += len(inplace.recover(store))
        assert sorted(p.name for p in store.iterdir()) == sorted(p.name for p in paths)
        for path, original in zip(paths, originals, strict=True):
            state = _state(path, original, pki)
            if work == "rewrap":
                assert state != "original"
            seen[state] = seen.get(state, 0) + 1
    # The kills landed before, during and after the work, for both operations.
    assert seen.get("original", 0) > 0
    assert seen.get("encrypted-for-alice", 0) > 0
    assert seen.get("encrypted-for-bob", 0) > 0
    assert removed > 0  # some kills left a temporary file, and recovery removed it
