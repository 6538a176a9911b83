"""The Ansible role installs imgvault into a prefix, is idempotent and honours --check.

Runs the real playbook against this machine (connection local) with every path under a
temporary directory; the Debian packages and the systemd service are left out because the test
machine has no systemd as PID 1 (the service part is exercised by the role only on real hosts).
"""

import re
import subprocess
import sys
from pathlib import Path

PROJECT = Path(__file__).resolve().parents[1]
ANSIBLE_PLAYBOOK = Path(sys.executable).parent / "ansible-playbook"


def _play(tmp_path: Path, *extra: str) -> dict[str, int]:
    argv = [
        str(ANSIBLE_PLAYBOOK),
        "-i", "localhost,", "-c", "local", str(PROJECT / "ansible" / "site.yml"),
        "-e", "imgvault_hosts=localhost",
        "-e", "imgvault_install_packages=false",
        "-e", "imgvault_manage_service=false",
        "-e", f"imgvault_prefix={tmp_path}/opt",
        "-e", f"imgvault_config_dir={tmp_path}/etc",
        "-e", f"imgvault_state_dir={tmp_path}/state",
        "-e", f"imgvault_bin_dir={tmp_path}",
        "-e", f"ansible_python_interpreter={sys.executable}",
        *extra,
    ]  # fmt: skip
    done = subprocess.run(argv, capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stdout + done.stderr
    recap = re.search(r"localhost\s*:\s*(.*)", done.stdout.split("PLAY RECAP")[-1])
    assert recap, done.stdout
    return {k: int(v) for k, v in re.findall(r"(\w+)=(\d+)", recap.group(1))}


def test_role_installs_idempotently_and_check_mode_changes_nothing(tmp_path: Path) -> None:
    checked = _play(tmp_path, "--check")
    assert checked["changed"] > 0
    assert not (tmp_path / "opt").exists()

    assert _play(tmp_path)["changed"] > 0
    installed = subprocess.run(
        [tmp_path / "imgvaultctl", "--version"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert installed.stdout.startswith("imgvaultctl ")
    policy = tmp_path / "etc/policy.toml"
    assert policy.read_text() == (PROJECT / "policies/default.toml").read_text()
    assert (tmp_path / "state").stat().st_mode & 0o777 == 0o700

    policy.write_text(policy.read_text().replace('"aes-128-xts"\n', '"aes-256-xts"\n', 1))
    again = _play(tmp_path)
    assert again["changed"] == 0 and again["failed"] == 0
    assert 'default_profile = "aes-256-xts"' in policy.read_text()  # the admin's edit is kept
