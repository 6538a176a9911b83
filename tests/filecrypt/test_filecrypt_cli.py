"""`imgvaultctl key` and `imgvaultctl file`, end to end in a scratch state directory."""

import json
import os
import stat
from pathlib import Path

import pytest
from fc_helpers import Party

from imgvault.cli import main as cli_main


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("IMGVAULT_STATE_DIR", str(tmp_path / "state"))
    (tmp_path / "pass").write_text("correct horse battery\n")
    return tmp_path


def ctl(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli_main.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_key_create_list_export(state: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pw = str(state / "pass")
    code, out, _ = ctl(capsys, "key", "create", "svc", "--bits", "2048", "--passphrase-file", pw)
    assert code == 0 and "RSA-2048" in out
    keys = state / "state" / "keys"
    assert stat.S_IMODE((keys / "svc.key").stat().st_mode) == 0o600
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert b"ENCRYPTED PRIVATE KEY" in (keys / "svc.key").read_bytes()
    code, out, _ = ctl(capsys, "key", "list", "--json")
    [entry] = json.loads(out)["keys"]
    assert (entry["name"], entry["bits"], entry["has_private_key"]) == ("svc", 2048, True)
    assert entry["not_after"] > entry["not_before"] and entry["stores"] == []
    code, out, _ = ctl(capsys, "key", "export-cert", "svc")
    assert out.startswith("-----BEGIN CERTIFICATE-----")
    code, _, err = ctl(capsys, "key", "create", "svc", "--bits", "2048", "--passphrase-file", pw)
    assert code == 1 and "already exists" in err and "hint:" in err


def test_key_create_refuses_weak_sizes_and_missing_passphrase(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = ctl(capsys, "key", "create", "k", "--bits", "1024")
    assert code == 1 and "2048 to 4096" in err
    code, _, err = ctl(capsys, "key", "create", "k", "--bits", "2048")  # stdin is no terminal
    assert code == 1 and "--passphrase-file" in err
    assert not (state / "state" / "keys" / "k.key").exists()


def test_key_import_checks_the_key_matches(
    state: Path, pki: dict[str, Party], capsys: pytest.CaptureFixture[str]
) -> None:
    alice, bob = pki["alice"], pki["bob"]
    code, _, err = ctl(
        capsys, "key", "import", "a", "--cert", str(alice.cert_pem), "--key", str(bob.key_pem)
    )
    assert code == 1 and "does not belong" in err
    code, out, _ = ctl(capsys, "key", "import", "rec", "--cert", str(alice.cert_pem))
    assert code == 0 and "imported certificate as rec" in out
    pw = str(state / "pass")
    code, out, _ = ctl(
        capsys, "key", "import", "b", "--cert", str(bob.cert_pem), "--key", str(bob.key_pem),
        "--passphrase-file", pw,
    )  # fmt: skip
    assert code == 0 and "certificate and private key" in out


def test_store_encrypt_inspect_verify_decrypt_rewrap_recover(
    state: Path, pki: dict[str, Party], capsys: pytest.CaptureFixture[str]
) -> None:
    pw = str(state / "pass")
    store = state / "pacs"
    (store / "2026").mkdir(parents=True)
    images = {store / "2026" / f"ct{i}.dcm": os.urandom(1000 * i) for i in range(4)}
    for path, data in images.items():
        path.write_bytes(data)
    (store / "link.dcm").symlink_to(store / "2026" / "ct1.dcm")
    assert ctl(capsys, "key", "create", "svc", "--bits", "2048", "--passphrase-file", pw)[0] == 0
    assert ctl(capsys, "key", "import", "recovery", "--cert", str(pki["alice"].cert_pem))[0] == 0
    code, _, _ = ctl(
        capsys, "file", "store", "add", "pacs", "--root", str(store),
        "--recipient", "svc", "--recipient", "recovery",
    )  # fmt: skip
    assert code == 0

    before = {p: p.read_bytes() for p in images}
    code, out, _ = ctl(capsys, "file", "encrypt", "--store", "pacs", "--check", "--json")
    assert json.loads(out)["counts"] == {"would-encrypt": 4}
    assert {p: p.read_bytes() for p in images} == before
    code, out, _ = ctl(capsys, "file", "encrypt", "--store", "pacs", "--json")
    report = json.loads(out)
    assert code == 1  # the symlink is refused, the rest is encrypted
    assert report["counts"] == {"encrypted": 4}
    assert [f["path"] for f in report["failed"]] == [str(store / "link.dcm")]
    (store / "link.dcm").unlink()
    code, out, _ = ctl(capsys, "file", "encrypt", "--store", "pacs")
    assert (code, out.strip()) == (0, "4 already-encrypted; 0 failed")

    target = store / "2026" / "ct3.dcm"
    code, out, _ = ctl(capsys, "file", "inspect", str(target), "--json")
    doc = json.loads(out)
    assert sorted(r["key_name"] for r in doc["recipients"]) == ["recovery", "svc"]
    assert doc["content_size"] == 3000 and doc["file_info"]["size"] == 3000
    code, out, _ = ctl(
        capsys, "file", "verify", str(target), "--key", "svc", "--passphrase-file", pw
    )
    assert code == 0 and "OK" in out
    (state / "wrong").write_text("wrong\n")
    code, _, err = ctl(
        capsys, "file", "verify", str(target), "--key", "svc", "--passphrase-file",
        str(state / "wrong"),
    )  # fmt: skip
    assert code == 1 and "wrong passphrase" in err
    code, _, _ = ctl(
        capsys, "file", "decrypt", str(target), "--key", str(pki["alice"].key_pem),
        "-o", str(state / "out.dcm"),
    )  # fmt: skip
    assert code == 0 and (state / "out.dcm").read_bytes() == images[target]

    assert ctl(capsys, "key", "import", "recovery2", "--cert", str(pki["bob"].cert_pem))[0] == 0
    code, out, _ = ctl(
        capsys, "file", "rewrap", "--store", "pacs", "--key", "svc", "--passphrase-file", pw,
        "--recipient", "svc", "--recipient", "recovery2", "--json",
    )  # fmt: skip
    assert code == 0 and json.loads(out)["counts"] == {"rewrapped": 4}
    code, out, _ = ctl(capsys, "key", "list", "--json")
    stores = {k["name"]: k["stores"] for k in json.loads(out)["keys"]}
    assert stores == {"svc": ["pacs"], "recovery": [], "recovery2": ["pacs"]}
    code, _, err = ctl(capsys, "file", "verify", str(target), "--key", str(pki["alice"].key_pem))
    assert code == 1 and "not a recipient" in err
    code, _, _ = ctl(capsys, "file", "decrypt", str(target), "--key", str(pki["bob"].key_pem))
    assert code == 0 and target.read_bytes() == images[target]

    (store / "2026" / ".imgvault-tmp.00000000000000aa").write_bytes(b"left by a crash")
    code, out, _ = ctl(capsys, "file", "recover", "--store", "pacs", "--json")
    assert len(json.loads(out)["removed"]) == 1


def test_decrypt_a_whole_store_twice_with_one_batch_key(
    state: Path, pki: dict[str, Party], capsys: pytest.CaptureFixture[str]
) -> None:
    store = state / "pacs"
    (store / "a").mkdir(parents=True)
    images = {store / "a" / f"{i}.dcm": os.urandom(100 + i) for i in range(6)}
    for path, data in images.items():
        path.write_bytes(data)
    cert, key = str(pki["alice"].cert_pem), str(pki["alice"].key_pem)
    assert ctl(capsys, "file", "encrypt", str(store), "--recipient", cert)[0] == 0
    code, out, _ = ctl(capsys, "file", "inspect", str(store / "a" / "0.dcm"), "--json")
    batch = json.loads(out)["batch_key"]
    assert len(batch["id"]) == 32 and batch["recipients"] == [
        "keyid " + pki["alice"].recipient.key_id.hex(":")
    ]
    code, out, _ = ctl(capsys, "file", "decrypt", str(store), "--key", key, "--json")
    assert (code, json.loads(out)["counts"]) == (0, {"decrypted": 6})
    assert {p: p.read_bytes() for p in images} == images
    code, out, _ = ctl(capsys, "file", "decrypt", str(store), "--key", key)
    assert (code, out.strip()) == (0, "6 not-encrypted; 0 failed")
    named = str(store / "a" / "0.dcm")  # named, not found in a directory: an error
    code, out, err = ctl(capsys, "file", "decrypt", named, "--key", key)
    assert code == 1 and "not an encrypted file" in err and out.strip() == "nothing done; 1 failed"
    code, _, err = ctl(capsys, "file", "decrypt", str(store), "--key", key, "-o", "x")
    assert code == 1 and "exactly one encrypted file" in err


def test_inspect_of_plaintext_is_a_clear_error(
    state: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plain = state / "plain.dcm"
    plain.write_bytes(b"\0" * 128 + b"DICM")
    code, _, err = ctl(capsys, "file", "inspect", str(plain))
    assert code == 1
    assert "not an encrypted file" in err and "hint: encrypt it first" in err


def test_file_help_shows_the_openssl_recovery_command(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        cli_main.main(["file", "--help"])
    assert "openssl cms -decrypt -binary -inform DER" in capsys.readouterr().out
