"""`trialcoord serve` believes X-Forwarded-For and X-Forwarded-Proto only from the proxies
TRIALCOORD_TRUSTED_PROXIES names (none by default): a client on the server's own machine cannot forge its
address past the per-address sign-in limit or into the audit trail and the access log. A real server
(uvicorn) on a free loopback port, on a temporary SQLite database."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from tests.e2e.test_browser import ROOT, _free_port, _wait_until_up

FORGED = "1.2.3.4"


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """Two servers started side by side (their start-up is most of this file's time): the default settings,
    and 127.0.0.1 named as a trusted proxy. Each: its address, its database and its access log."""
    started: dict[str, tuple[subprocess.Popen, str, Path, Path]] = {}
    for name, settings in (("default", {}), ("trusting", {"TRIALCOORD_TRUSTED_PROXIES": "127.0.0.1"})):
        folder = tmp_path_factory.mktemp(name)
        port = _free_port()
        env = {
            "PATH": "/usr/bin:/bin",
            "PYTHONPATH": str(ROOT),
            "TRIALCOORD_DATABASE_URL": f"sqlite:///{folder / 'proxy.sqlite3'}",
            "TRIALCOORD_DATA_DIR": str(folder / "data"),
            "TRIALCOORD_TIME_ZONE": "UTC",
            "TRIALCOORD_NIGHTLY": "off",
            **settings,
        }
        command = [sys.executable, "-m", "trialcoord", "serve", "--host", "127.0.0.1", "--port", str(port)]
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
        started[name] = (process, f"http://127.0.0.1:{port}", folder / "proxy.sqlite3", folder / "data" / "access.log")
    try:
        for process, base, *_ in started.values():
            _wait_until_up(base, process)
        yield {name: (base, sqlite3.connect(database), log) for name, (_, base, database, log) in started.items()}
    finally:
        for process, *_ in started.values():
            process.terminate()
            process.wait(timeout=10)


def sign_in_as_sprayer(base: str, connection: sqlite3.Connection) -> tuple[int, str]:
    """50 failures from 127.0.0.1 already (the per-address limit), then one more attempt claiming another
    address: its answer and the address recorded for it."""
    now = datetime.now(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"
    rows = [(now, "(unknown user ID)", "127.0.0.1", "failed")] * 50
    connection.executemany(
        "INSERT INTO login_attempts (attempted_at, user_id, address, outcome) VALUES (?,?,?,?)", rows
    )
    connection.commit()
    body = {"user_id": "nobody", "password": "guess"}
    answer = httpx.post(f"{base}/api/sign-in", json=body, headers={"X-Forwarded-For": FORGED}, timeout=30)
    (address,) = connection.execute("SELECT address FROM login_attempts ORDER BY id DESC LIMIT 1").fetchone()
    return answer.status_code, address


def test_by_default_a_forwarded_address_is_not_believed(servers):
    base, connection, access_log = servers["default"]
    status, address = sign_in_as_sprayer(base, connection)
    assert (status, address) == (429, "127.0.0.1")  # throttled as the address the request came from
    proto = httpx.get(f"{base}/health", headers={"X-Forwarded-Proto": "https"})
    assert "strict-transport-security" not in proto.headers  # nor is a claim of TLS
    with open(access_log, encoding="utf-8") as log:
        logged = [line.split() for line in log]
    assert [(f[1], f[3], f[4]) for f in logged if f[3] == "/api/sign-in"] == [("127.0.0.1", "/api/sign-in", "429")]


def test_the_named_proxy_is_believed(servers):
    base, connection, access_log = servers["trusting"]
    status, address = sign_in_as_sprayer(base, connection)
    assert (status, address) == (401, FORGED)  # the proxy's client has no failures: wrong password only
    proto = httpx.get(f"{base}/health", headers={"X-Forwarded-Proto": "https"})
    assert proto.headers["strict-transport-security"].startswith("max-age=")
    with open(access_log, encoding="utf-8") as log:
        assert any(line.split()[1:5] == [FORGED, "POST", "/api/sign-in", "401"] for line in log)


def test_a_wildcard_or_a_name_is_refused():
    from trialcoord.kernel.config import ConfigError, load_settings

    for bad in ("*", "proxy.example.org", "10.0.0.0/33"):
        with pytest.raises(ConfigError, match="TRIALCOORD_TRUSTED_PROXIES"):
            load_settings({"TRIALCOORD_TRUSTED_PROXIES": bad})
    assert load_settings({"TRIALCOORD_TRUSTED_PROXIES": "10.0.0.1, 192.168.0.0/16"}).trusted_proxies == (
        "10.0.0.1",
        "192.168.0.0/16",
    )
