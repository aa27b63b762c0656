"""`trialcoord export sponsor` and `trialcoord verify` of a sponsor package, run as a user runs them: exit codes,
messages naming what is wrong, and never a traceback."""

from __future__ import annotations

import zipfile
from datetime import date, timedelta

import pytest

from tests.integration.test_cli_admin import env, fails, succeeds  # noqa: F401 (env is a fixture)

pytestmark = pytest.mark.anyio


async def test_a_package_made_on_the_command_line_verifies_and_bad_requests_are_named(env, tmp_path):  # noqa: F811
    succeeds("setup", env=env)
    own = tmp_path / "data" / "signatures" / "registry.json"  # the installation's registry, by default
    out = tmp_path / "p.zip"
    made = succeeds("export", "sponsor", "DEMO-001", "--out", str(out), env=env)
    assert made.startswith(f"{out}: transfer 1 of DEMO-001, ") and "sha256 " in made
    checked = succeeds("verify", str(out), env=env)  # the configured registry holds the system key
    assert "sponsor package" in checked and "trusted through the signer registry " in checked
    assert f"{own}" in checked
    again = succeeds("export", "sponsor", "DEMO-001", "--transfer", "1", "--out", str(tmp_path / "q.zip"), env=env)
    assert "(a rebuild of transfer 1)" in again
    assert (tmp_path / "q.zip").read_bytes() == out.read_bytes()

    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(out) as source, zipfile.ZipFile(damaged, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            target.writestr(info, data.replace(b"DEMO-001", b"DEMO-002", 1) if info.filename == "dm.csv" else data)
    refused = fails(1, "verify", str(damaged), env=env)
    assert "dm.csv: its SHA-256 differs from the manifest's: altered" in refused

    future = (date.today() + timedelta(days=3)).isoformat()
    assert "is still to come" in fails(
        2, "export", "sponsor", "DEMO-001", "--as-of", future, "--out", str(out), env=env
    )
    assert "has no site 999" in fails(2, "export", "sponsor", "DEMO-001", "--site", "999", "--out", str(out), env=env)
    assert "no finished transfer 9" in fails(
        2, "export", "sponsor", "DEMO-001", "--transfer", "9", "--out", str(out), env=env
    )
    missing = tmp_path / "nowhere" / "p.zip"
    assert "no such folder" in fails(2, "export", "sponsor", "DEMO-001", "--out", str(missing), env=env)
    assert "study NOPE does not exist" in fails(2, "export", "sponsor", "NOPE", "--out", str(out), env=env)
