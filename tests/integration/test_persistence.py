"""The persistence adapter on both engines: migrations, tables, transactions and integrity errors."""

from __future__ import annotations

from datetime import date

import anyio
import pytest

from trialcoord.kernel.config import load_settings
from trialcoord.kernel.database.engine import (
    POOL_MAX_SIZE,
    bound_engine,
    close_pool,
    fetch,
    fetch_rows,
    read,
    start_pool,
    transaction,
)
from trialcoord.kernel.database.migrations import MIGRATIONS, applied_versions, migrate
from trialcoord.kernel.database.opening import open_database
from trialcoord.kernel.database.tables import TABLES, Study
from trialcoord.kernel.problems import Conflict, InvalidInput
from trialcoord.scheduling.store import studies as studies_store

pytestmark = [pytest.mark.anyio, pytest.mark.db]


async def test_migrations_run_once_and_match_the_tables(db):
    assert await migrate(db.engine) == []  # the fixture already migrated
    assert await applied_versions(db.engine) == {step.version for step in MIGRATIONS}
    for table in TABLES:
        await table.select().limit(1)  # fails if a column of the piccolo table is missing


async def test_a_failed_unit_of_work_leaves_nothing_behind(db):
    with pytest.raises(RuntimeError):
        async with transaction("study X"):
            await studies_store.insert_study("X", "Study X")
            raise RuntimeError("boom")
    assert await Study.count() == 0


async def test_integrity_errors_become_domain_errors(db):
    await studies_store.insert_study("X", "Study X")
    with pytest.raises(Conflict, match="^study X: already recorded by someone else"):
        async with transaction("study X"):
            await fetch("INSERT INTO studies (code, title) VALUES ({}, {})", "X", "again")
    with pytest.raises(Conflict, match="^site 1: refers to a record that does not exist"):
        async with transaction("site 1"):
            await fetch("INSERT INTO sites (study, code, name, time_zone) VALUES (999, '1', 'x', 'UTC')")
    with pytest.raises(InvalidInput):
        async with transaction():
            await fetch("INSERT INTO studies (code) VALUES ('Y')")
    assert await Study.count() == 1


async def test_fetch_rows_keeps_the_select_order_and_types_dates(db):
    async with transaction():
        await studies_store.insert_study("X", "Study X")
        await fetch(
            "INSERT INTO protocol_versions (study, version, effective, source_name, source_text, sha256)"
            " VALUES ((SELECT id FROM studies WHERE code = {}), '1.0', {}, 'x.yaml', '', '')",
            "X",
            date(2024, 1, 2),
        )
    rows = await fetch_rows(
        "SELECT pv.effective, s.code, pv.version FROM protocol_versions pv"
        " JOIN studies s ON s.id = pv.study WHERE s.code = {}",
        "X",
    )
    assert [tuple(row) for row in rows] == [(date(2024, 1, 2), "X", "1.0")]
    assert await fetch("SELECT code FROM studies") == [{"code": "X"}]


async def test_read_holds_one_connection_and_joins_a_unit_of_work(db):
    engine = bound_engine()
    async with read():
        held = engine.current_transaction.get()
        await fetch_rows("SELECT 1")
        assert engine.current_transaction.get() is held
    async with transaction():
        unit = engine.current_transaction.get()
        async with read():
            assert engine.current_transaction.get() is unit
    assert engine.current_transaction.get() is None


@pytest.mark.parametrize("db", ["sqlite"], indirect=True)  # PostgreSQL's pool is asyncpg's own
async def test_the_sqlite_pool_reuses_at_most_its_size_of_connections(db, monkeypatch):
    engine, opened = bound_engine(), []
    open_connection = engine._open

    async def counted():
        opened.append(await open_connection())
        return opened[-1]

    monkeypatch.setattr(engine, "_open", counted)
    await start_pool(engine)
    try:
        async with anyio.create_task_group() as group:
            for _ in range(3 * POOL_MAX_SIZE):
                group.start_soon(fetch_rows, "SELECT 1")
        with pytest.raises(RuntimeError):  # a failed unit of work gives its connection back
            async with transaction():
                raise RuntimeError("boom")
        await fetch_rows("SELECT 1")
        assert len(opened) <= POOL_MAX_SIZE and len(engine.idle) == len(opened)
    finally:
        await close_pool(engine)
    assert engine.idle is None


async def test_open_database_binds_the_configured_engine(db):
    settings = load_settings({"TRIALCOORD_DATABASE_URL": db.url})
    async with open_database(settings, migrate=True) as engine:
        assert bound_engine() is engine and await Study.count() == 0


async def test_migration_7_clears_stored_site_calendars_that_are_no_calendar(db, monkeypatch):
    """Site calendars were stored unchecked and never used before migration 7: values that name no calendar are
    cleared (nothing changes: the protocol's calendar applied), calendar names are kept."""
    step = next(s for s in MIGRATIONS if s.version == 7)
    statement = next(q for q in step.statements if "UPDATE sites SET calendar = NULL" in q)
    await studies_store.insert_study("X", "Study X")
    study = (await fetch("SELECT id FROM studies WHERE code = 'X'"))[0]["id"]
    for code, calendar in (
        ("1", "DE"),
        ("2", "holidays:DE-BY"),
        ("3", "business-us"),
        ("4", "Holidays:FR"),
        ("5", None),
    ):
        await fetch(
            "INSERT INTO sites (study, code, name, time_zone, calendar) VALUES ({}, {}, {}, 'UTC', {})",
            study,
            code,
            code,
            calendar,
        )
    await fetch(statement)  # as migration 7 runs it on a database of version 6
    rows = await fetch("SELECT code, calendar FROM sites ORDER BY code")
    assert [(r["code"], r["calendar"]) for r in rows] == [
        ("1", None),
        ("2", "holidays:DE-BY"),
        ("3", "business-us"),
        ("4", None),
        ("5", None),
    ]
