from pathlib import Path
from types import SimpleNamespace

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


def test_unreadable_header_is_reported_as_unknown_for_non_root(monkeypatch) -> None:
    """Without root, blkid cannot open devices: status says so instead of failing."""
    from imgvault.devices import inventory
    from imgvault.volumes.errors import DeviceMissingError

    fake_udev_device = SimpleNamespace(
        sys_name="sdz",
        device_node="/dev/sdz",
        device_type="disk",
        properties={"MAJOR": "8", "MINOR": "250"},
        attributes=SimpleNamespace(asstring={"size": "2048"}.__getitem__),  # KeyError otherwise
    )

    def denied(path):
        raise DeviceMissingError(f"{path} does not exist or cannot be opened")

    monkeypatch.setattr(inventory, "probe_identity", denied)
    monkeypatch.setattr(inventory.os, "geteuid", lambda: 1000)
    block = inventory._describe(fake_udev_device, {})
    assert block.encryption_state == "unknown"
    assert block.encryption_summary() == "unknown: run as root to read headers"
    assert block.to_json()["encrypted"] is False
