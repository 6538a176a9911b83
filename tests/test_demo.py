"""`imgvaultctl demo`, the README's first command, works without root or disks and is safe to
run again."""

import json
from pathlib import Path

import pytest

from imgvault.cli.main import main


def test_demo_encrypts_slices_and_openssl_restores_one_then_reruns_with_the_same_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = tmp_path / "demo"
    assert main(["demo", "--dir", str(demo), "--files", "4", "--json"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert (first["ok"], first["files"], first["encrypted"]) == (True, 4, 4)
    assert first["openssl_restored"].endswith("SERIES1/IMG0001.dcm")
    keys = {p.name: p.read_bytes() for p in (demo / "state" / "keys").iterdir()}
    assert (demo / "state" / "keys" / "demo-service.key").stat().st_mode & 0o777 == 0o600
    assert (demo / "state" / "demo-passphrase").stat().st_mode & 0o777 == 0o600

    assert main(["demo", "--dir", str(demo), "--files", "2"]) == 0
    out = capsys.readouterr().out
    assert "restored bit for bit" in out
    assert {p.name: p.read_bytes() for p in (demo / "state" / "keys").iterdir()} == keys
    assert len(list((demo / "store").rglob("*.dcm"))) == 6
    assert not [p for p in (demo / "store").rglob("*") if p.name.startswith(".")]
    for image in (demo / "store").rglob("*.dcm"):
        assert b"SYNTHETIC" not in image.read_bytes()  # not even the synthetic name in clear
