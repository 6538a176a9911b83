"""run_streaming: lines arrive while the tool runs; stderr is kept; secrets go on stdin."""

from pathlib import Path

from imgvault.secret import Secret
from imgvault.system.run import run_streaming


def test_lines_arrive_as_printed_and_stderr_is_collected(tmp_path: Path) -> None:
    flag = tmp_path / "seen-first"
    # The tool prints "second" only if "first" was handed over while it was still running.
    script = (
        f"echo first; echo oops >&2; for i in $(seq 200); do [ -e {flag} ] && break; "
        f"sleep 0.05; done; [ -e {flag} ] && echo second || echo not-streamed"
    )
    seen: list[str] = []

    def on_line(line: str) -> None:
        seen.append(line)
        flag.touch()

    result = run_streaming(["sh", "-c", script], on_line)
    assert seen == ["first", "second"]
    assert result.ok and result.stdout == "first\nsecond" and result.stderr == "oops\n"


def test_secret_goes_to_stdin_not_argv() -> None:
    lines: list[str] = []
    result = run_streaming(["cat"], lines.append, stdin_secret=Secret("s3cret\nline two"))
    assert lines == ["s3cret", "line two"]
    assert all("s3cret" not in arg for arg in result.argv)
