"""Settings from the environment: defaults, parsing, and errors that name the variable to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from trialcoord.kernel.config import POSTGRES, SQLITE, ConfigError, get_settings, load_settings, reset_settings


def test_defaults():
    settings = load_settings({})
    assert settings.database_url.kind == SQLITE
    assert Path(settings.database_url.path) == Path("data/trialcoord.sqlite3")
    assert (settings.data_dir, settings.time_zone) == (Path("data"), "UTC")
    assert (settings.host, settings.port) == ("127.0.0.1", 8000)


def test_the_default_database_lives_in_the_data_dir():
    assert load_settings({"TRIALCOORD_DATA_DIR": "/srv/tc"}).database_url.path == "/srv/tc/trialcoord.sqlite3"


def test_postgres_url_and_other_values():
    settings = load_settings(
        {
            "TRIALCOORD_DATABASE_URL": "postgresql://tc:secret@db.example:5433/trials",
            "TRIALCOORD_TIME_ZONE": "America/New_York",
            "TRIALCOORD_HOST": "0.0.0.0",
            "TRIALCOORD_PORT": "9000",
        }
    )
    url = settings.database_url
    assert (url.kind, url.database, str(url)) == (POSTGRES, "trials", "postgresql://tc:***@db.example:5433/trials")
    assert (settings.time_zone, settings.host, settings.port) == ("America/New_York", "0.0.0.0", 9000)


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("TRIALCOORD_DATABASE_URL", "mysql://u:pw@h/db", "unsupported URL 'mysql://u:\\*\\*\\*@h/db'"),
        ("TRIALCOORD_DATABASE_URL", "sqlite://", "names no database file"),
        ("TRIALCOORD_DATABASE_URL", "sqlite:///:memory:", "names no database file"),
        ("TRIALCOORD_DATABASE_URL", "postgresql://user@host:5432", "needs a host and a database name"),
        ("TRIALCOORD_DATABASE_URL", "postgresql://user@host:port/db", "Port could not be cast"),
        ("TRIALCOORD_TIME_ZONE", "Mars/Olympus", "not an IANA time zone"),
        ("TRIALCOORD_PORT", "80a", "not a port number"),
        ("TRIALCOORD_PORT", "70000", "not a port number"),
        ("TRIALCOORD_TSA_URL", "ftp://tsa.example/", "not the http\\(s\\) address of an RFC 3161"),
        ("TRIALCOORD_TSA_URL", "tsa.example", "not the http\\(s\\) address"),
        ("TRIALCOORD_TSA_URL", "http://tsa.example:port/", "not the http\\(s\\) address"),
        ("TRIALCOORD_TSA_URL", "https://me:pw@tsa.example/", "'https://me:\\*\\*\\*@tsa.example/' carries credentials"),
    ],
)
def test_bad_values_name_the_variable(variable, value, message):
    with pytest.raises(ConfigError, match=f"^{variable}: .*{message}"):
        load_settings({variable: value})


def test_a_time_stamp_authority_is_optional():
    assert load_settings({}).tsa_url is None and load_settings({"TRIALCOORD_TSA_URL": ""}).tsa_url is None
    assert load_settings({"TRIALCOORD_TSA_URL": "https://tsa.example:8443/rfc3161"}).tsa_url == (
        "https://tsa.example:8443/rfc3161"
    )


def test_a_tsa_ca_file_needs_a_tsa():
    with pytest.raises(ConfigError, match="^TRIALCOORD_TSA_CA_FILE: set, but TRIALCOORD_TSA_URL names no"):
        load_settings({"TRIALCOORD_TSA_CA_FILE": "/etc/tsa-ca.pem"})
    settings = load_settings({"TRIALCOORD_TSA_URL": "http://tsa.example/", "TRIALCOORD_TSA_CA_FILE": "/etc/ca.pem"})
    assert settings.tsa_ca_file == Path("/etc/ca.pem")


def test_the_tsas_ca_certificates_are_read_from_pem_and_a_bad_file_is_named(tmp_path):
    from cryptography.hazmat.primitives import serialization

    from tests.unit.test_signed_pdf import SIGNED_AT
    from trialcoord.kernel.installation import Installation
    from trialcoord.kernel.problems import NotConfigured
    from trialcoord.kernel.render.signed_pdf import new_site_credentials

    def installation(ca_file):
        environ = {"TRIALCOORD_TSA_URL": "http://tsa.example/", "TRIALCOORD_TSA_CA_FILE": str(ca_file)}
        return Installation(load_settings(environ))

    first, second = (new_site_credentials(n, "CA", SIGNED_AT, SIGNED_AT)[1] for n in ("one", "two"))
    bundle = tmp_path / "ca.pem"
    bundle.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM) for c in (first, second)))
    assert installation(bundle).tsa_roots() == [first, second]
    assert Installation(load_settings({"TRIALCOORD_TSA_URL": "http://tsa.example/"})).tsa_roots() == []
    (tmp_path / "bad.pem").write_text("not a certificate")
    for path in (tmp_path / "bad.pem", tmp_path / "missing.pem"):
        with pytest.raises(NotConfigured, match=f"^PAdES B-LT is unavailable: TRIALCOORD_TSA_CA_FILE {path}: "):
            installation(path).tsa_roots()


def test_get_settings_is_cached_until_reset(monkeypatch):
    monkeypatch.setenv("TRIALCOORD_PORT", "8001")
    reset_settings()
    assert get_settings() is get_settings() and get_settings().port == 8001
    monkeypatch.setenv("TRIALCOORD_PORT", "8002")
    assert get_settings().port == 8001
    reset_settings()
    assert get_settings().port == 8002
    monkeypatch.undo()
    reset_settings()


@pytest.mark.parametrize(
    "instant, zone, today",
    [
        ("2026-12-06 23:30:00", "UTC", "2026-12-06"),
        ("2026-12-06 23:30:00", "Asia/Tokyo", "2026-12-07"),  # already tomorrow at the site
        ("2026-12-07 03:30:00", "America/Los_Angeles", "2026-12-06"),  # still yesterday there
        ("2027-03-28 00:59:59", "Europe/Berlin", "2027-03-28"),  # the night clocks go forward
    ],
)
def test_today_is_the_calendar_date_at_the_site(instant, zone, today):
    """Visit dates are the site's calendar dates, never the server's (freezegun: a plain datetime.now to freeze)."""
    from freezegun import freeze_time

    with freeze_time(instant):  # UTC
        assert load_settings({"TRIALCOORD_TIME_ZONE": zone}).today().isoformat() == today


def test_the_audit_clock_is_utc_with_microseconds():
    from freezegun import freeze_time

    from trialcoord.kernel.audit_log import clock
    from trialcoord.kernel.rules.audit_entries import utc_instant

    with freeze_time("2026-12-06 21:05:01.000250"):
        assert utc_instant(clock()) == "2026-12-06T21:05:01.000250Z"
