from pathlib import Path

from imgvault.cli.output import format_table, human_size
from imgvault.devices.inventory import mountpoints_by_devno


def test_human_size_uses_binary_units_like_lsblk() -> None:
    assert human_size(0) == "0B"
    assert human_size(1023) == "1023B"
    assert human_size(32 * 1024 * 1024) == "32.0M"
    assert human_size(256 * 1024**3) == "256G"
    assert human_size(3 * 1024**6) == "3072P"


def test_format_table_aligns_multiline_cells() -> None:
    table = format_table(["A", "BB"], [["x", "1\n22"], ["yyy", "3"]])
    assert table.splitlines() == ["A    BB", "x    1", "     22", "yyy  3"]


def test_mountinfo_parsing_unescapes_octal(tmp_path: Path) -> None:
    mountinfo = tmp_path / "mountinfo"
    mountinfo.write_text(
        "22 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw\n"
        "40 22 253:1 / /srv/pacs\\040images rw - ext4 /dev/mapper/pacs rw\n"
        "41 22 253:1 / /srv/bind rw - ext4 /dev/mapper/pacs rw\n"
    )
    mounts = mountpoints_by_devno(mountinfo)
    assert mounts["254:0"] == ["/"]
    assert mounts["253:1"] == ["/srv/pacs images", "/srv/bind"]
