"""Versioned, additive schema migrations: CREATE TABLE, CREATE INDEX and ADD COLUMN only.

SQLite cannot alter a column, so a step never changes or drops one: it only adds. The SQL is
portable across SQLite, PostgreSQL and CockroachDB; the one engine-specific piece, the identity
primary key, is the `{pk}` token (`{stamps}` stands for created_at/updated_at). Integer columns are
declared `INT`, not `INTEGER`: piccolo converts every SQLite `INTEGER` value through Decimal, which
doubles the time to read a large schedule.
Append new steps at the end; never edit an applied one.
"""

from __future__ import annotations

from dataclasses import dataclass

from piccolo.engine.base import Engine
from piccolo.querystring import QueryString

from trialcoord.adapters.persistence.engine import is_sqlite, transaction
from trialcoord.services.errors import Conflict

PRIMARY_KEY = {True: "INTEGER PRIMARY KEY", False: "SERIAL PRIMARY KEY"}  # keyed by is_sqlite
STAMPS = (
    "created_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP, "
    "updated_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP"
)


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    statements: tuple[str, ...]


MIGRATIONS: tuple[Migration, ...] = (
    Migration(
        1,
        "studies, protocol versions, sites, participants, events and visits",
        (
            """CREATE TABLE studies (
                id {pk}, code TEXT NOT NULL UNIQUE, title TEXT NOT NULL, {stamps})""",
            """CREATE TABLE protocol_versions (
                id {pk}, study INT NOT NULL REFERENCES studies (id), version TEXT NOT NULL,
                effective DATE NOT NULL, source_name TEXT NOT NULL, source_text TEXT NOT NULL,
                sha256 TEXT NOT NULL, loaded_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP,
                UNIQUE (study, version))""",
            """CREATE TABLE sites (
                id {pk}, study INT NOT NULL REFERENCES studies (id), code TEXT NOT NULL,
                name TEXT NOT NULL, time_zone TEXT NOT NULL, calendar TEXT, {stamps},
                UNIQUE (study, code))""",
            """CREATE TABLE participants (
                id {pk}, study INT NOT NULL REFERENCES studies (id), subject_id TEXT NOT NULL,
                site INT NOT NULL REFERENCES sites (id), arm TEXT,
                protocol_version INT NOT NULL REFERENCES protocol_versions (id),
                status TEXT NOT NULL, enrolled_on DATE NOT NULL, {stamps},
                UNIQUE (study, subject_id))""",
            "CREATE INDEX participants_site ON participants (site)",
            """CREATE TABLE protocol_changes (
                id {pk}, participant INT NOT NULL REFERENCES participants (id),
                from_version INT NOT NULL REFERENCES protocol_versions (id),
                to_version INT NOT NULL REFERENCES protocol_versions (id),
                effective DATE NOT NULL, reason TEXT NOT NULL,
                recorded_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP)""",
            "CREATE INDEX protocol_changes_participant ON protocol_changes (participant)",
            """CREATE TABLE recorded_events (
                id {pk}, participant INT NOT NULL REFERENCES participants (id),
                event TEXT NOT NULL, date DATE NOT NULL, reason TEXT, {stamps},
                UNIQUE (participant, event))""",
            """CREATE TABLE visits (
                id {pk}, participant INT NOT NULL REFERENCES participants (id),
                code TEXT NOT NULL, definition TEXT NOT NULL, occurrence INT NOT NULL,
                name TEXT NOT NULL, number DOUBLE PRECISION,
                target DATE, earliest DATE, latest DATE, actual DATE, actual_reason TEXT,
                status TEXT NOT NULL, days_outside INT NOT NULL, study_day INT,
                optional BOOLEAN NOT NULL, appointment DATE, appointment_reason TEXT, missed_reason TEXT,
                protocol_version INT NOT NULL REFERENCES protocol_versions (id),
                evaluated_on DATE NOT NULL, row_version INT NOT NULL, {stamps},
                UNIQUE (participant, code))""",
            "CREATE INDEX visits_status ON visits (status)",
            "CREATE INDEX visits_window ON visits (earliest, latest)",
            "CREATE INDEX visits_latest ON visits (latest)",
            "CREATE INDEX visits_appointment ON visits (appointment)",
        ),
    ),
)

_LEDGER = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT CURRENT_TIMESTAMP)"""


async def migrate(engine: Engine) -> list[int]:
    """Apply the steps not applied yet, each in its own transaction; return their versions."""
    if is_sqlite(engine):
        await engine.run_ddl("PRAGMA journal_mode=WAL")  # readers do not block the writer
    await engine.run_ddl(_LEDGER)
    applied = await applied_versions(engine)
    done = []
    for step in MIGRATIONS:
        if step.version not in applied and await _apply(engine, step):
            done.append(step.version)
    return done


async def applied_versions(engine: Engine) -> set[int]:
    rows = engine.transform_response_to_dicts(await engine.run_ddl("SELECT version FROM schema_migrations"))
    return {row["version"] for row in rows}


async def _apply(engine: Engine, step: Migration) -> bool:
    """False when another process applied the step first (its ledger row wins the primary key)."""
    try:
        async with transaction(f"schema migration {step.version}", engine):
            # The ledger row goes first: a concurrent migrator blocks on it, then fails cleanly.
            await engine.run_querystring(
                QueryString("INSERT INTO schema_migrations (version, name) VALUES ({}, {})", step.version, step.name)
            )
            for statement in step.statements:
                await engine.run_ddl(_render(statement, engine))
    except Conflict:
        return False
    return True


def _render(statement: str, engine: Engine) -> str:
    return statement.replace("{pk}", PRIMARY_KEY[is_sqlite(engine)]).replace("{stamps}", STAMPS)
