"""Which files some process has open: a file still being written must not be encrypted yet.

In-place encryption replaces the file by rename; a writer that still holds the old one would
keep writing into the replaced inode and its data would be lost. /proc answers without any tool.
"""

import os
from pathlib import Path

PROC = Path("/proc")
FileId = tuple[int, int]  # (st_dev, st_ino)


def open_file_ids(proc: Path = PROC) -> set[FileId]:
    """(device, inode) of every regular file any other process has open (not this one, whose
    only open store files are those it is encrypting itself)."""
    ids: set[FileId] = set()
    me = str(os.getpid())
    for entry in proc.iterdir():
        if not entry.name.isdigit() or entry.name == me:
            continue
        try:
            fds = list((entry / "fd").iterdir())
        except OSError:  # gone, or not ours to read
            continue
        for fd in fds:
            try:
                st = fd.stat()
            except OSError:
                continue
            if st.st_nlink and (st.st_mode & 0o170000) == 0o100000:
                ids.add((st.st_dev, st.st_ino))
    return ids


def file_id(path: Path) -> FileId | None:
    try:
        st = path.lstat()
    except OSError:
        return None
    return (st.st_dev, st.st_ino)
