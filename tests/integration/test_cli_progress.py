"""Long commands show their progress on a terminal (stderr a TTY) and nothing anywhere else; what they print on
stdout, which scripts read, is the same byte for byte either way. Run as a user runs them: a separate process,
once with stderr a pipe, once with stderr a pseudo-terminal."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios
import threading
from datetime import date
from pathlib import Path

import pytest

from tests.integration.test_cli_admin import env  # noqa: F401 (a fixture)

ROOT = Path(__file__).resolve().parents[2]


def piped(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:  # noqa: F811
    command = [sys.executable, "-m", "trialcoord.cli.main", *args]
    environment = {**os.environ, "TRIALCOORD_TIME_ZONE": "UTC", **env}
    result = subprocess.run(command, capture_output=True, env=environment, cwd=ROOT, stdin=subprocess.DEVNULL)
    assert result.returncode == 0, (args, result.stdout, result.stderr)
    return result


def on_terminal(*args: str, env: dict[str, str]) -> tuple[bytes, str]:  # noqa: F811
    """(stdout, what the terminal showed) of a command whose stderr is a pseudo-terminal of 100 columns."""
    master, terminal = pty.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 30, 100, 0, 0))
    environment = {**os.environ, "TRIALCOORD_TIME_ZONE": "UTC", "TERM": "xterm-256color", **env}
    process = subprocess.Popen(
        [sys.executable, "-m", "trialcoord.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=terminal,
        stdin=subprocess.DEVNULL,
        env=environment,
        cwd=ROOT,
    )
    os.close(terminal)
    shown: list[bytes] = []
    reader = threading.Thread(target=drain, args=(master, shown))
    reader.start()
    out = process.stdout.read() if process.stdout else b""
    assert process.wait(timeout=300) == 0, (args, out, b"".join(shown))
    reader.join(timeout=10)
    os.close(master)
    return out, b"".join(shown).decode("utf-8", errors="replace")


def drain(master: int, into: list[bytes]) -> None:
    """What a terminal's other end wrote, until it closed (EIO): one read returns only what one write put there."""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            return
        if not chunk:
            return
        into.append(chunk)


def same_either_way(*args: str, env: dict[str, str], shows: list[str]) -> bytes:  # noqa: F811
    """The command's stdout, checked the same on a terminal and off it; off it stderr is empty, on it progress
    shows each of `shows`."""
    plain = piped(*args, env=env)
    assert plain.stderr == b"", plain.stderr
    out, terminal = on_terminal(*args, env=env)
    assert out == plain.stdout
    for text in shows:
        assert text in terminal, (text, terminal)
    return out


@pytest.mark.anyio
async def test_long_commands_show_progress_on_a_terminal_only_and_print_the_same(env, tmp_path):  # noqa: F811
    published = tmp_path / "signatures"
    published.mkdir()
    env = {**env, "TRIALCOORD_SIGNATURES_DIR": str(published)}
    piped("setup", env=env)  # keys, and the demo study

    events = tmp_path / "events.csv"
    events.write_text(f"participant,event,date\n101-990,consent,{date.today().isoformat()}\n", encoding="utf-8")
    piped("import", "events", "DEMO-001", str(events), "--site", "101", env=env)  # then every run finds it there
    imported = same_either_way(
        "import", "events", "DEMO-001", str(events), "--site", "101", env=env, shows=["Importing", "rows read"]
    )
    assert b"1 lines already present" in imported

    piped("deviations", "detect", "DEMO-001", "--full", env=env)
    detected = same_either_way(
        "deviations", "detect", "DEMO-001", "--full", env=env, shows=["Detecting deviations of DEMO-001"]
    )
    assert b"(full)" in detected

    package = tmp_path / "package.zip"
    piped("export", "sponsor", "DEMO-001", "--out", str(package), env=env)
    rebuilt = same_either_way(
        "export", "sponsor", "DEMO-001", "--transfer", "1", "--out", str(package), env=env,
        shows=["Sponsor package of DEMO-001", "%"],
    )  # fmt: skip
    assert b"(a rebuild of transfer 1)" in rebuilt

    checked = same_either_way("verify", str(package), env=env, shows=["Verifying 1 package"])
    assert b"sponsor package" in checked
    stored = same_either_way("verify", env=env, shows=["Checking every signature"])
    assert stored.startswith(b"all ") and b"verify" in stored


def test_progress_off_a_terminal_writes_nothing_and_on_one_shows_each_step(capsys):
    from trialcoord.kernel.command_support import progress

    with progress("Importing") as shown:  # pytest's stderr is not a terminal
        shown("1,000,000 rows read, 100,000 participants; checking them")
        shown.advance(0.5, "half way")
    assert not shown.on and capsys.readouterr() == ("", "")

    master, terminal = pty.openpty()
    with open(terminal, "w", encoding="utf-8", closefd=True) as stream, progress("Importing", stream) as shown:
        shown("1,000,000 rows read, 100,000 participants; checking them")
        shown.advance(0.5, "half way")
    chunks: list[bytes] = []
    drain(master, chunks)
    os.close(master)
    seen = b"".join(chunks).decode("utf-8", errors="replace")
    assert shown.on and " s  1,000,000 rows read, 100,000 participants; checking them" in seen
    assert "half way" in seen or "50%" in seen
    assert capsys.readouterr().out == ""
