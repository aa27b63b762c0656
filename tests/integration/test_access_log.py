"""The access log (docs/security.md): one line per request, refusals included; no query values, no feed
token; written to a file that rotates."""

from __future__ import annotations

import re
import stat

import httpx
import pytest

from tests.conftest import account_rules, add_user, signed_in

pytestmark = [pytest.mark.anyio, pytest.mark.db]

LINE = re.compile(
    r"^(?P<at>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z) (?P<address>\S+) (?P<method>[A-Z]+) (?P<path>\S+) "
    r"(?P<status>\d{3}) (?P<user>\S+) (?P<ms>\d+\.\d)ms$"
)


def app_logging_to(db, tmp_path, system_keys, **more: str):
    from trialcoord.kernel.config import load_settings
    from trialcoord.kernel.installation import Installation
    from trialcoord.web.app import create_app

    settings = load_settings(
        {
            "TRIALCOORD_DATABASE_URL": db.url,
            "TRIALCOORD_DATA_DIR": str(tmp_path / "data"),
            "TRIALCOORD_SIGNATURES_DIR": "/nonexistent",
            "TRIALCOORD_ACCESS_LOG": str(tmp_path / "logs" / "access.log"),
            **more,
        }
    )
    return create_app(settings, account_rules=account_rules(), installation=Installation(settings, system_keys))


def lines(tmp_path) -> list[dict[str, str]]:
    text = (tmp_path / "logs" / "access.log").read_text(encoding="utf-8")
    parsed = [LINE.match(line) for line in text.splitlines()]
    assert all(parsed), text
    return [m.groupdict() for m in parsed if m]


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_one_line_per_request_refusals_included_without_query_or_feed_token(db, tmp_path, system_keys, personas):
    app = app_logging_to(db, tmp_path, system_keys)
    transport = httpx.ASGITransport(app=app, client=("10.0.0.7", 5000))
    async with httpx.AsyncClient(transport=transport, base_url="https://testserver") as anonymous:
        assert (await anonymous.get("/api/studies")).status_code == 401
        secret = "s3cret-feed-token"
        feed = await anonymous.get(f"/api/studies/TST-1/sites/101/feeds/{secret}/schedule.ics")
        assert feed.status_code == 404
        outsider = await signed_in(anonymous, "outsider")
        assert (await outsider.get("/api/studies/TST-1/participants/1001")).status_code == 403
        await add_user("searcher", ("coordinator", "TST-1", "101"))
        searcher = await signed_in(anonymous, "searcher")
        page = await searcher.get("/studies/TST-1/search", params={"q": "Jane Doe 1950-02-03"})
        assert page.status_code == 200
    logged = lines(tmp_path)
    assert [(e["method"], e["path"], e["status"], e["user"]) for e in logged] == [
        ("GET", "/api/studies", "401", "-"),
        ("GET", "/api/studies/TST-1/sites/101/feeds/***/schedule.ics", "404", "-"),
        ("GET", "/api/studies/TST-1/participants/1001", "403", "outsider"),
        ("GET", "/studies/TST-1/search", "200", "searcher"),
    ]
    assert {e["address"] for e in logged} == {"10.0.0.7"}
    text = (tmp_path / "logs" / "access.log").read_text(encoding="utf-8")
    assert secret not in text and "Jane" not in text and "q=" not in text and "?" not in text


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)
async def test_the_log_rotates_at_its_size_and_keeps_its_backups(db, tmp_path, system_keys):
    env = {"TRIALCOORD_ACCESS_LOG_MAX_KB": "1", "TRIALCOORD_ACCESS_LOG_BACKUPS": "2"}
    app = app_logging_to(db, tmp_path, system_keys, **env)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="https://testserver") as client:
        for _ in range(60):  # ~60 bytes a line: about three files' worth
            assert (await client.get("/health")).status_code == 200
    logs = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert logs == ["access.log", "access.log.1", "access.log.2"]
    assert all((tmp_path / "logs" / name).stat().st_size <= 1024 for name in logs)
    # It names users and addresses: readable by the server's account only.
    assert {stat.S_IMODE((tmp_path / "logs" / name).stat().st_mode) for name in logs} == {0o600}
    assert stat.S_IMODE((tmp_path / "logs").stat().st_mode) == 0o700
    assert lines(tmp_path)[-1]["path"] == "/health"


def test_the_settings_name_what_is_wrong():
    from trialcoord.kernel.config import ConfigError, load_settings

    with pytest.raises(ConfigError, match="TRIALCOORD_ACCESS_LOG_MAX_KB"):
        load_settings({"TRIALCOORD_ACCESS_LOG_MAX_KB": "lots"})
    with pytest.raises(ConfigError, match="TRIALCOORD_ACCESS_LOG_BACKUPS"):
        load_settings({"TRIALCOORD_ACCESS_LOG_BACKUPS": "-1"})
    assert load_settings({"TRIALCOORD_ACCESS_LOG": "-"}).access_log is None  # standard error
    assert load_settings({"TRIALCOORD_DATA_DIR": "/srv/tc"}).access_log == __import__("pathlib").Path(
        "/srv/tc/access.log"
    )
