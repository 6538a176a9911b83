"""The imgvaultctl front end: help texts, error rendering, exit codes."""

import pytest

from imgvault.cli import main as cli_main
from imgvault.cli.commands import status
from imgvault.system.run import ToolMissingError


def test_help_lists_command_groups(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli_main.main(["--help"])
    assert caught.value.code == 0
    out = capsys.readouterr().out
    assert "status" in out
    assert "--json" in out


def test_status_help_explains_the_cipher_naming(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli_main.main(["status", "--help"])
    assert "AES-128-XTS" in capsys.readouterr().out


def test_errors_print_message_and_hint_without_traceback(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def missing() -> list:
        raise ToolMissingError("blkid is not installed", "install it: apt-get install util-linux")

    monkeypatch.setattr(status, "list_block_devices", missing)
    assert cli_main.main(["status"]) == 69
    err = capsys.readouterr().err
    assert err == (
        "imgvaultctl: error: blkid is not installed\n"
        "  hint: install it: apt-get install util-linux\n"
    )


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as caught:
        cli_main.main(["frobnicate"])
    assert caught.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
