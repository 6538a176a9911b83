"""Secrets stay out of reprs, argv and environment; tool failures are typed."""

import pickle
import subprocess
from pathlib import Path
from typing import Any

import pytest

from imgvault.secret import Secret
from imgvault.system import run as run_module
from imgvault.system.run import SecretFd, ToolFailedError, ToolMissingError, run
from imgvault.volumes import cryptsetup

PASSPHRASE = "correct horse battery staple"


def test_secret_repr_is_redacted_and_it_cannot_be_pickled() -> None:
    secret = Secret(PASSPHRASE)
    assert PASSPHRASE not in repr(secret)
    assert PASSPHRASE not in str(secret)
    assert PASSPHRASE not in f"{secret} {[secret]} { ({'k': secret}) }"
    with pytest.raises(TypeError):
        pickle.dumps(secret)
    assert secret.reveal() == PASSPHRASE.encode()
    secret.wipe()
    assert secret.reveal() == b""


def test_stdin_secret_reaches_the_child_but_not_argv() -> None:
    result = run(["cat"], stdin_secret=Secret(PASSPHRASE))
    assert result.stdout == PASSPHRASE
    assert PASSPHRASE not in " ".join(result.argv)


def test_fd_secret_is_readable_as_dev_fd_path_and_closed_after() -> None:
    secret_fd = SecretFd(Secret(PASSPHRASE))
    path = secret_fd.open()
    assert path.startswith("/dev/fd/")
    result = run(["cat", path], fd_secrets=[secret_fd])
    assert result.stdout == PASSPHRASE
    assert not Path(path).exists()  # our end is closed once the tool has run


def test_fd_secret_is_closed_even_when_the_tool_is_missing() -> None:
    secret_fd = SecretFd(Secret(PASSPHRASE))
    path = secret_fd.open()
    with pytest.raises(ToolMissingError):
        run(["no-such-tool-xyz", path], fd_secrets=[secret_fd])
    assert not Path(path).exists()


def test_child_environment_is_minimal_and_in_the_c_locale(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IMGVAULT_SOMETHING_SECRET", "leak")
    result = run(["env"])
    assert "leak" not in result.stdout
    assert "LC_ALL=C" in result.stdout.splitlines()


def test_missing_tool_names_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(run_module.TOOL_PACKAGES, "no-such-tool-xyz", "xyz-utils")
    with pytest.raises(ToolMissingError) as caught:
        run(["no-such-tool-xyz"])
    assert "apt-get install xyz-utils" in str(caught.value)


def test_check_raises_with_the_tool_message() -> None:
    with pytest.raises(ToolFailedError, match="No such file"):
        run(["cat", "/nonexistent/file"], check=True)


def test_cryptsetup_operations_never_put_keys_in_argv_or_env(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Every operation that takes a key: record what would be exec'd and look for the key."""
    seen: list[dict[str, Any]] = []

    def fake_run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[bytes]:
        seen.append({"argv": argv, "env": kwargs["env"]})
        out = b"Key slot 3 unlocked.\nKey slot 4 created.\n"
        return subprocess.CompletedProcess(argv, 0, out, b"")

    monkeypatch.setattr(run_module.subprocess, "run", fake_run)
    monkeypatch.setattr(cryptsetup, "read_header", lambda device: None)
    old, new = Secret("old-" + PASSPHRASE), Secret("new-" + PASSPHRASE)
    device = tmp_path / "disk.img"
    cryptsetup.luks_format(device, old)
    assert cryptsetup.test_key(device, old) == 3
    cryptsetup.open_volume(device, "pacs", old)
    assert cryptsetup.add_key(device, old, new) == 4
    assert len(seen) == 4
    for call in seen:
        flat = " ".join(call["argv"]) + " " + " ".join(call["env"].values())
        assert PASSPHRASE not in flat
        assert "--batch-mode" in call["argv"]


def test_harden_process_disables_core_dumps_and_ptrace() -> None:
    import subprocess as sp
    import sys

    # In a child, so the test process itself stays debuggable.
    code = (
        "import ctypes, resource; from imgvault.secret import harden_process; harden_process();"
        "libc = ctypes.CDLL(None); print(resource.getrlimit(resource.RLIMIT_CORE), "
        "libc.prctl(3, 0, 0, 0, 0))"  # PR_GET_DUMPABLE
    )
    out = sp.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "(0, 0) 0"
