"""The store watcher encrypts what lands in a store once its writer is done, on a real
inotify watch of a real directory, and leaves what it must not touch alone."""

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from fc_helpers import Party, decrypt_bytes

from imgvault.filecrypt.inplace import TEMP_PREFIX, inspect_file, is_encrypted
from imgvault.filecrypt.stores import Store
from imgvault.stores.watcher import StoreEvent, StoreWatcher

SETTLE = 0.3


@pytest.fixture
def store(tmp_path: Path) -> Path:
    root = tmp_path / "store"
    root.mkdir()
    return root


@pytest.fixture
def events() -> list[StoreEvent]:
    return []


@pytest.fixture
def watcher(store: Path, pki: dict[str, Party], events: list[StoreEvent]) -> Iterator[StoreWatcher]:
    running = StoreWatcher(
        Store("pacs", store, ["alice"]), [pki["alice"].recipient], events.append,
        settle_seconds=SETTLE,
    )  # fmt: skip
    yield running
    running.stop()


def encrypted(path: Path) -> bool:
    with path.open("rb") as f:
        return is_encrypted(f, path.stat().st_size, str(path))


def test_files_written_renamed_or_moved_in_as_a_directory_are_encrypted(
    tmp_path: Path, store: Path, watcher: StoreWatcher, pki: dict[str, Party],
    events: list[StoreEvent],
) -> None:  # fmt: skip
    watcher.start()
    contents = {store / "direct.dcm": os.urandom(70_000)}
    (store / "direct.dcm").write_bytes(contents[store / "direct.dcm"])
    partial = store / "incoming.part"  # a DICOM receiver writes, then renames
    partial.write_bytes(data := os.urandom(5000))
    partial.rename(store / "renamed.dcm")
    contents[store / "renamed.dcm"] = data
    study = tmp_path / "study"  # a whole study moved in at once
    (study / "series1").mkdir(parents=True)
    for n in range(3):
        contents[store / "study" / "series1" / f"{n}.dcm"] = blob = os.urandom(1000 + n)
        (study / "series1" / f"{n}.dcm").write_bytes(blob)
    study.rename(store / "study")

    assert watcher.wait_idle(timeout=30)
    for path, original in contents.items():
        assert encrypted(path), path
        assert decrypt_bytes(path, pki["alice"]) == original
    assert sorted(e.path for e in events if e.action == "encrypted") == sorted(contents)
    assert not list(store.rglob(f"{TEMP_PREFIX}*"))
    batches = {inspect_file(p)[0].batch for p in contents}  # one batch key for them all
    assert len({b.record for b in batches if b is not None}) == 1 and None not in batches


def test_a_file_still_open_in_another_process_waits_until_it_is_closed(
    store: Path, watcher: StoreWatcher
) -> None:
    watcher.start()
    target = store / "slow.dcm"
    writer = subprocess.Popen(
        [sys.executable, "-c",
         "import sys, time\nf = open(sys.argv[1], 'wb')\nf.write(b'x' * 4096); f.flush()\n"
         "print('written', flush=True); time.sleep(3600)", str(target)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert writer.stdout is not None and writer.stdout.readline() == "written\n"
        time.sleep(SETTLE * 5)
        assert target.read_bytes() == b"x" * 4096  # not touched while open
    finally:
        writer.kill()
        writer.wait()
    watcher.schedule([target])  # the writer's death emits no close-write event
    assert watcher.wait_idle(timeout=30)
    assert encrypted(target)


def test_leftovers_and_plaintext_from_before_start_are_handled_at_start(
    store: Path, watcher: StoreWatcher, events: list[StoreEvent]
) -> None:
    (store / "old").mkdir()
    (store / "old" / "a.dcm").write_bytes(b"plain image")
    leftover = store / "old" / f"{TEMP_PREFIX}0123456789abcdef"
    leftover.write_bytes(b"half an encryption")
    watcher.start()
    assert watcher.wait_idle(timeout=30)
    assert not leftover.exists()
    assert encrypted(store / "old" / "a.dcm")
    assert [(e.action, e.path) for e in events] == [
        ("recovered", leftover),
        ("encrypted", store / "old" / "a.dcm"),
    ]


def test_symlinks_fifos_and_hard_links_are_refused_and_left_alone(
    tmp_path: Path, store: Path, watcher: StoreWatcher, events: list[StoreEvent]
) -> None:
    outside = tmp_path / "outside.dcm"
    outside.write_bytes(b"not in the store")
    (store / "link.dcm").symlink_to(outside)
    os.mkfifo(store / "pipe.dcm")
    (store / "one.dcm").write_bytes(b"linked twice")
    os.link(store / "one.dcm", store / "two.dcm")
    watcher.start()
    assert watcher.wait_idle(timeout=30)
    refused = {e.path.name: e.detail for e in events if e.action == "refused"}
    assert set(refused) == {"link.dcm", "pipe.dcm", "one.dcm", "two.dcm"}
    assert "symbolic link" in refused["link.dcm"]
    assert "hard links" in refused["one.dcm"]
    assert outside.read_bytes() == b"not in the store"
    assert (store / "one.dcm").read_bytes() == b"linked twice"
    assert (store / "link.dcm").is_symlink()


def test_a_missing_store_root_is_a_clear_error(tmp_path: Path, pki: dict[str, Party]) -> None:
    watcher = StoreWatcher(
        Store("gone", tmp_path / "unmounted", ["alice"]), [pki["alice"].recipient], print
    )
    with pytest.raises(Exception, match="not a directory") as caught:
        watcher.start()
    assert "mount the volume" in caught.value.hint  # type: ignore[attr-defined]
