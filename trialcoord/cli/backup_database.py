"""The database half of `trialcoord backup` / `restore` (cli/backup.py): SQLite through the standard library's
online backup API, PostgreSQL through the client tools pg_dump, pg_restore and psql (named when not on PATH)."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

from trialcoord.kernel.command_support import UsageError
from trialcoord.kernel.config import POSTGRES, Settings


def copy_database(settings: Settings, out: Path) -> None:
    if settings.database_url.kind == POSTGRES:
        tool("pg_dump", "--format=custom", "--no-owner", f"--file={out}", f"--dbname={settings.database_url.url}")
        return
    source = sqlite3.connect(settings.database_url.path)
    copy = sqlite3.connect(out)
    try:
        source.backup(copy)  # consistent while the server writes (WAL)
    finally:
        copy.close()
        source.close()


def holds_data(settings: Settings) -> bool:
    """Whether any audit entry was ever written there (every write records one)."""
    if settings.database_url.kind == POSTGRES:

        def query(sql: str) -> str:
            where = f"--dbname={settings.database_url.url}"
            return tool("psql", "--no-psqlrc", "--tuples-only", "--no-align", where, f"--command={sql}").strip()

        return query("SELECT to_regclass('audit_head') IS NOT NULL") == "t" and query(
            "SELECT size FROM audit_head"
        ) not in ("", "0")
    if not Path(settings.database_url.path).exists():
        return False
    connection = sqlite3.connect(f"file:{settings.database_url.path}?mode=ro", uri=True)
    try:
        rows = connection.execute("SELECT name FROM sqlite_master WHERE name = 'audit_head'").fetchall()
        return bool(rows) and connection.execute("SELECT size FROM audit_head").fetchone() not in (None, (0,))
    finally:
        connection.close()


def restore_database(copy: Path, settings: Settings, replace: bool) -> None:
    url = settings.database_url
    if url.kind == POSTGRES:
        if replace:  # objects the backup lacks (a newer migration's) must go too
            tool(
                "psql",
                "--no-psqlrc",
                f"--dbname={url.url}",
                "--command=DROP SCHEMA public CASCADE; CREATE SCHEMA public",
            )
        tool("pg_restore", "--no-owner", "--exit-on-error", f"--dbname={url.url}", str(copy))
        return
    Path(url.path).parent.mkdir(parents=True, exist_ok=True)
    source, target = sqlite3.connect(copy), sqlite3.connect(url.path)
    try:
        source.backup(target)  # replaces every page, WAL included
    finally:
        target.close()
        source.close()


def tool(name: str, *args: str) -> str:
    """A PostgreSQL client tool; a password in the database URL goes in its environment, never on its command line
    (which every user of the machine can read)."""
    if shutil.which(name) is None:
        raise UsageError(f"{name} is not on PATH: PostgreSQL backups need the PostgreSQL client tools (pg_dump 15+)")
    environment = dict(os.environ)
    shown = []
    for arg in args:
        if arg.startswith("--dbname="):
            url = urlsplit(arg.removeprefix("--dbname="))
            if url.password is not None:
                environment["PGPASSWORD"] = unquote(url.password)
                host = url.netloc.rpartition("@")[2]
                user = f"{url.username}@" if url.username else ""
                arg = "--dbname=" + urlunsplit(url._replace(netloc=f"{user}{host}"))
        shown.append(arg)
    done = subprocess.run([name, *shown], capture_output=True, text=True, check=False, env=environment)
    if done.returncode != 0:
        raise UsageError(f"{name} failed: {done.stderr.strip()}")
    return done.stdout
