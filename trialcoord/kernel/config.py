"""Settings from the environment (TRIALCOORD_*), read once through `get_settings()`.

A bad value raises ConfigError whose message names the variable, so the CLI can print it instead of
a traceback.
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

SQLITE, POSTGRES = "sqlite", "postgres"
_URL_HINT = "expected sqlite:///path/to/file.sqlite3 or postgresql://user@host:port/database"


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the variable and the fix."""


@dataclass(frozen=True, slots=True)
class DatabaseUrl:
    kind: str  # SQLITE or POSTGRES
    url: str
    path: str = ""  # SQLite file
    database: str = ""  # PostgreSQL database name

    def __str__(self) -> str:
        return _without_password(self.url)


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: DatabaseUrl
    data_dir: Path
    time_zone: str  # the site's: visit dates are calendar dates there
    host: str
    port: int
    session_timeout: timedelta = timedelta(minutes=15)  # inactivity sign-out (HIPAA 164.312(a)(2)(iii))
    secure_cookies: bool = True  # browsers keep Secure cookies of http://localhost and 127.0.0.1 too

    audit_key_file: Path | None = None  # the system's Ed25519 key, for signed audit checkpoints
    audit_passphrase_file: Path | None = None
    pii_key_file: Path | None = None  # AES keys of participants' personal data (or TRIALCOORD_PII_KEYS)
    pades_file: Path | None = None  # the site's ECDSA key and certificate for PAdES (PKCS#12)
    tsa_url: str | None = None  # an RFC 3161 time-stamp authority: PAdES B-T instead of B-B
    tsa_ca_file: Path | None = None  # its CA certificates (PEM): B-LT, the validation data embedded
    signatures_dir: Path = Path("signatures")  # where `signatures publish` publishes the signer registry
    keys_dir: Path | None = None  # the system's keys, apart from the data directory (backed up apart too)
    keys_in_old_place: tuple[Path, ...] = ()  # key files still read from the data directory: move them
    nightly_at: time | None = time(2, 30)  # local time of the nightly refresh and detection `serve` runs (None: off)
    checkpoint_dir: Path | None = None  # signed audit checkpoints written outside the database (None: unanchored)
    checkpoint_every: int = 1000  # a checkpoint there after each this many audit entries (and daily)
    checkpoint_dir_inside_data: bool = False  # allow checkpoint_dir inside data_dir (same disk: a weaker anchor)
    access_log: Path | None = None  # the access log's file (None: standard error); docs/security.md
    access_log_max_kb: int = 10240  # rotated at this size
    access_log_backups: int = 10  # rotated files kept
    trusted_proxies: tuple[str, ...] = ()  # addresses whose X-Forwarded-For/-Proto `serve` believes

    def today(self) -> date:
        return datetime.now(ZoneInfo(self.time_zone)).date()


def parse_database_url(url: str, variable: str = "TRIALCOORD_DATABASE_URL") -> DatabaseUrl:
    shown = _without_password(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a non-numeric port
    except ValueError as exc:
        raise ConfigError(f"{variable}: {exc} in '{shown}'; {_URL_HINT}") from None
    if parts.scheme == "sqlite":
        # sqlite:///relative.db and sqlite:////absolute.db, as SQLAlchemy spells them.
        path = url[len("sqlite:///") :] if url.startswith("sqlite:///") else ""
        if not path or path == ":memory:":
            raise ConfigError(f"{variable}: '{shown}' names no database file; {_URL_HINT}")
        return DatabaseUrl(SQLITE, url, path=path)
    if parts.scheme in ("postgresql", "postgres"):
        database = parts.path.lstrip("/")
        if not parts.hostname or not database:
            raise ConfigError(f"{variable}: '{shown}' needs a host and a database name; {_URL_HINT}")
        return DatabaseUrl(POSTGRES, url, database=database)
    raise ConfigError(f"{variable}: unsupported URL '{shown}'; {_URL_HINT}")


def load_settings(environ: Mapping[str, str] = os.environ) -> Settings:
    data_dir = Path(environ.get("TRIALCOORD_DATA_DIR") or "./data")
    url = environ.get("TRIALCOORD_DATABASE_URL") or f"sqlite:///{data_dir / 'trialcoord.sqlite3'}"
    host = environ.get("TRIALCOORD_HOST") or "127.0.0.1"
    keys_dir = Path(environ.get("TRIALCOORD_KEYS_DIR") or data_dir.parent / f"{data_dir.name}-keys")
    old: list[Path] = []

    def key_file(variable: str, name: str) -> Path:
        """The variable's file, else the keys directory's; one an older installation kept in the data
        directory is read from there until moved (`setup` says how)."""
        if environ.get(variable):
            return Path(environ[variable])
        if not (keys_dir / name).exists() and (data_dir / name).exists():
            old.append(data_dir / name)
            return data_dir / name
        return keys_dir / name

    return Settings(
        database_url=parse_database_url(url),
        data_dir=data_dir,
        time_zone=_time_zone(environ.get("TRIALCOORD_TIME_ZONE") or "UTC"),
        host=host,
        port=_port(environ.get("TRIALCOORD_PORT") or "8000"),
        session_timeout=timedelta(minutes=_minutes(environ.get("TRIALCOORD_SESSION_TIMEOUT_MINUTES") or "15")),
        secure_cookies=_flag("TRIALCOORD_SECURE_COOKIES", environ.get("TRIALCOORD_SECURE_COOKIES"), default=True),
        audit_key_file=key_file("TRIALCOORD_AUDIT_KEY_FILE", "audit-key.json"),
        audit_passphrase_file=key_file("TRIALCOORD_AUDIT_PASSPHRASE_FILE", "audit-key.passphrase"),
        pii_key_file=key_file("TRIALCOORD_PII_KEY_FILE", "pii-keys.json"),
        pades_file=key_file("TRIALCOORD_PADES_FILE", "pades-credentials.p12"),
        tsa_url=_tsa_url(environ.get("TRIALCOORD_TSA_URL") or None),
        tsa_ca_file=_tsa_ca_file(environ.get("TRIALCOORD_TSA_CA_FILE") or None, environ.get("TRIALCOORD_TSA_URL")),
        signatures_dir=Path(environ.get("TRIALCOORD_SIGNATURES_DIR") or "signatures"),
        nightly_at=_nightly(environ.get("TRIALCOORD_NIGHTLY"), environ.get("TRIALCOORD_NIGHTLY_AT") or "02:30"),
        checkpoint_dir=Path(environ["TRIALCOORD_CHECKPOINT_DIR"]) if environ.get("TRIALCOORD_CHECKPOINT_DIR") else None,
        checkpoint_every=_entries(environ.get("TRIALCOORD_CHECKPOINT_EVERY") or "1000"),
        checkpoint_dir_inside_data=_flag(
            "TRIALCOORD_CHECKPOINT_DIR_INSIDE_DATA", environ.get("TRIALCOORD_CHECKPOINT_DIR_INSIDE_DATA"), default=False
        ),
        access_log=_access_log(environ.get("TRIALCOORD_ACCESS_LOG") or str(data_dir / "access.log")),
        access_log_max_kb=_count("TRIALCOORD_ACCESS_LOG_MAX_KB", environ.get("TRIALCOORD_ACCESS_LOG_MAX_KB"), 10240, 1),
        access_log_backups=_count("TRIALCOORD_ACCESS_LOG_BACKUPS", environ.get("TRIALCOORD_ACCESS_LOG_BACKUPS"), 10, 0),
        trusted_proxies=_trusted_proxies(environ.get("TRIALCOORD_TRUSTED_PROXIES") or ""),
        keys_dir=keys_dir,
        keys_in_old_place=tuple(old),
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings; tests call `reset_settings()` after changing the environment."""
    return load_settings()


def reset_settings() -> None:
    get_settings.cache_clear()


def _time_zone(name: str) -> str:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ConfigError(
            f"TRIALCOORD_TIME_ZONE: '{name}' is not an IANA time zone such as 'UTC' or 'America/New_York'"
        ) from None
    return name


def _port(text: str) -> int:
    if not text.isdigit() or not 0 < int(text) < 65536:
        raise ConfigError(f"TRIALCOORD_PORT: '{text}' is not a port number (1-65535)")
    return int(text)


def _minutes(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1440:
        raise ConfigError(f"TRIALCOORD_SESSION_TIMEOUT_MINUTES: '{text}' is not a number of minutes (1-1440)")
    return int(text)


def _entries(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 10_000_000:
        raise ConfigError(f"TRIALCOORD_CHECKPOINT_EVERY: '{text}' is not a number of audit entries (1-10000000)")
    return int(text)


def _tsa_url(url: str | None) -> str | None:
    if url is None:
        return None
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError on a non-numeric port
    except ValueError:
        parts = None
    if parts is None or parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"TRIALCOORD_TSA_URL: '{_without_password(url)}' is not the http(s) address of an RFC 3161 time-stamp "
            "authority, such as http://timestamp.example.org/tsa"
        )
    if parts.username is not None or parts.password is not None:  # it would be logged with every failure
        raise ConfigError(
            f"TRIALCOORD_TSA_URL: '{_without_password(url)}' carries credentials; time-stamp authorities that "
            "need a password are not supported"
        )
    return url


def _tsa_ca_file(path: str | None, url: str | None) -> Path | None:
    if path is not None and not url:
        raise ConfigError("TRIALCOORD_TSA_CA_FILE: set, but TRIALCOORD_TSA_URL names no time-stamp authority")
    return Path(path) if path else None


def _nightly(switch: str | None, at: str) -> time | None:
    if not _flag("TRIALCOORD_NIGHTLY", switch, default=True):
        return None
    try:
        hours, minutes = at.split(":")
        if len(hours) == 2 and len(minutes) == 2 and hours.isdigit() and minutes.isdigit():
            return time(int(hours), int(minutes))
    except ValueError:
        pass
    raise ConfigError(f"TRIALCOORD_NIGHTLY_AT: '{at}' is not a time of day as HH:MM, such as 02:30")


def _access_log(text: str) -> Path | None:
    return None if text == "-" else Path(text)


def _count(variable: str, text: str | None, default: int, least: int) -> int:
    if text is None or text == "":
        return default
    if not text.isdigit() or int(text) < least:
        raise ConfigError(f"{variable}: '{text}' is not a whole number of at least {least}")
    return int(text)


def _trusted_proxies(text: str) -> tuple[str, ...]:
    """Addresses or networks (CIDR) of the reverse proxies in front of `serve`; none by default."""
    named = tuple(part.strip() for part in text.split(",") if part.strip())
    for one in named:
        try:
            ipaddress.ip_network(one)
        except ValueError:
            raise ConfigError(
                f"TRIALCOORD_TRUSTED_PROXIES: '{one}' is not an IP address or network such as 127.0.0.1 or "
                "10.0.0.0/8 (a comma-separated list; '*' is refused: every client could forge its address)"
            ) from None
    return named


def _flag(variable: str, text: str | None, default: bool) -> bool:
    if text is None or text == "":
        return default
    if text.lower() in ("1", "true", "yes", "on"):
        return True
    if text.lower() in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"{variable}: '{text}' is not true or false")


def _without_password(url: str) -> str:
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
    except ValueError:
        return url
    return url.replace(f":{parts.password}@", ":***@", 1)
