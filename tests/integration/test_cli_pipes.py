"""`trialcoord ... | head`: a reader that stops early ends the command quietly (exit 141, as a command killed by
SIGPIPE), never with a BrokenPipeError traceback; every command goes through `main`, so two cover them all."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.conftest import PROTOCOL_V1
from tests.integration.test_cli import ROOT

EXIT_PIPE_CLOSED = 141


def _started(*args: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "trialcoord.cli.main", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "TRIALCOORD_TIME_ZONE": "UTC", **(env or {})},
        cwd=ROOT,
    )


def _ended(process: subprocess.Popen) -> tuple[int, str]:
    stderr = process.stderr.read().decode() if process.stderr else ""
    return process.wait(timeout=60), stderr


@pytest.fixture
def many_participants(tmp_path) -> tuple[str, str]:
    protocol = tmp_path / "tst.yaml"
    protocol.write_text(PROTOCOL_V1)
    events = tmp_path / "events.csv"
    # Far more output than a pipe holds (64 KiB), so the command is still writing when the reader goes.
    lines = [f"P{n:05d},randomization,2024-03-04" for n in range(3000)]
    events.write_text("participant,event,date\n" + "\n".join(lines) + "\n")
    return str(protocol), str(events)


def test_a_reader_that_stops_after_one_line_ends_the_command_quietly(many_participants):
    protocol, events = many_participants
    process = _started("check", protocol, "--events", events, "--as-of", "2024-03-10")
    assert process.stdout is not None
    first = process.stdout.readline()
    process.stdout.close()  # as `head -1` does after its line
    status, stderr = _ended(process)
    assert first.startswith(b"participant  visit")
    assert status == EXIT_PIPE_CLOSED and stderr == "", stderr


def test_a_pipe_closed_before_anything_is_written_ends_the_command_quietly(many_participants):
    protocol, _ = many_participants
    process = _started(
        "schedule", protocol, "--event", "randomization=2024-03-04", "--format", "ics", "--subject", "S-1"
    )
    assert process.stdout is not None
    process.stdout.close()  # closed while the interpreter still starts: its first write finds no reader
    status, stderr = _ended(process)
    assert status == EXIT_PIPE_CLOSED and "Traceback" not in stderr and stderr == "", stderr
