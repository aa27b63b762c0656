"""The persistence adapter on both engines: migrations, tables, transactions and integrity errors."""

from __future__ import annotations

import pytest

from trialcoord.adapters.persistence import repositories as repo
from trialcoord.adapters.persistence.engine import bound_engine, fetch, open_database, transaction
from trialcoord.adapters.persistence.migrations import MIGRATIONS, applied_versions, migrate
from trialcoord.adapters.persistence.tables import TABLES, Study
from trialcoord.config import load_settings
from trialcoord.domain.problems import InvalidInput
from trialcoord.services.errors import Conflict

pytestmark = [pytest.mark.anyio, pytest.mark.db]


async def test_migrations_run_once_and_match_the_tables(db):
    assert await migrate(db.engine) == []  # the fixture already migrated
    assert await applied_versions(db.engine) == {step.version for step in MIGRATIONS}
    for table in TABLES:
        await table.select().limit(1)  # fails if a column of the piccolo table is missing


async def test_a_failed_unit_of_work_leaves_nothing_behind(db):
    with pytest.raises(RuntimeError):
        async with transaction("study X"):
            await repo.insert_study("X", "Study X")
            raise RuntimeError("boom")
    assert await Study.count() == 0


async def test_integrity_errors_become_domain_errors(db):
    await repo.insert_study("X", "Study X")
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



async def test_open_database_binds_the_configured_engine(db):
    settings = load_settings({"TRIALCOORD_DATABASE_URL": db.url})
    async with open_database(settings, migrate=True) as engine:
        assert bound_engine() is engine and await Study.count() == 0
